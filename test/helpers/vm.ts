import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

/** A paused VM (TCG: KVM aborts on this machine) holding `image` on a virtio-blk device, as a running guest would. */
export function startVmHolding(image: string, format: string): ChildProcess {
  return spawn(
    'qemu-system-x86_64',
    ['-accel', 'tcg', '-machine', 'pc', '-S', '-nodefaults', '-display', 'none', '-drive', `file=${image},if=none,format=${format},id=d0`, '-device', 'virtio-blk-pci,drive=d0'],
    { stdio: 'ignore' },
  );
}

/** Waits until the VM holds the image's write lock (a writable open by qemu-io then fails). */
export async function waitUntilLocked(vm: ChildProcess, image: string, format: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (vm.exitCode !== null || vm.signalCode !== null) throw new Error(`the VM exited (${vm.exitCode ?? vm.signalCode}) before locking ${image}`);
    try {
      execFileSync('qemu-io', ['-f', format, '-c', 'quit', image], { stdio: 'pipe' });
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the VM never locked the image');
}

/** Kills the VM and waits for it, also when it has already exited. */
export async function stopVm(vm: ChildProcess): Promise<void> {
  if (vm.exitCode !== null || vm.signalCode !== null) return;
  const exited = once(vm, 'exit');
  vm.kill('SIGKILL');
  await exited;
}
