import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

const START_ATTEMPTS = 5;
const POLLS = 100;
const POLL_MS = 100;

function startVm(image: string, format: string): ChildProcess {
  return spawn(
    'qemu-system-x86_64',
    ['-accel', 'tcg', '-machine', 'pc', '-S', '-nodefaults', '-display', 'none', '-drive', `file=${image},if=none,format=${format},id=d0`, '-device', 'virtio-blk-pci,drive=d0'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
}

const exited = (vm: ChildProcess): boolean => vm.exitCode !== null || vm.signalCode !== null;

/**
 * Starts a paused VM (TCG: KVM aborts on this machine) holding `image` on a virtio-blk device,
 * as a running guest would, and returns once it holds the image's write lock. The probe is a
 * writable qemu-io open, which itself takes the lock for a moment: a VM starting at that very
 * moment fails to lock and exits, so it is started again.
 */
export async function startVmHolding(image: string, format: string): Promise<ChildProcess> {
  let stderr = '';
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const vm = startVm(image, format);
    vm.stderr?.on('data', (d) => (stderr += String(d)));
    for (let i = 0; i < POLLS && !exited(vm); i++) {
      try {
        execFileSync('qemu-io', ['-f', format, '-c', 'quit', image], { stdio: 'pipe' });
      } catch {
        if (!exited(vm)) return vm;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    await stopVm(vm);
  }
  throw new Error(`no VM could hold ${image}: ${stderr.trim().split('\n').slice(-2).join(' | ')}`);
}

/** Kills the VM and waits for it, also when it has already exited. */
export async function stopVm(vm: ChildProcess): Promise<void> {
  if (exited(vm)) return;
  const gone = once(vm, 'exit');
  vm.kill('SIGKILL');
  await gone;
}
