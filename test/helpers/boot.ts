/**
 * Boots a disk image under qemu (TCG: KVM aborts on this machine) the way a hypervisor would
 * boot a template: BIOS, a virtio disk, user networking with the guest's port 22 forwarded to a
 * free local port, the serial console logged to a file, QMP on a unix socket. The test waits for
 * the console's login prompt, asks the guest's sshd for its host keys, and powers it off with
 * the ACPI button as a hypervisor would. Disposal always kills qemu and removes the temp dir.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const POLL_MS = 1000;

export interface BootOptions {
  readonly format: 'raw' | 'qcow2';
  readonly memoryMiB?: number;
  /** How long the console may take to show `login:` (TCG under load: minutes). */
  readonly loginTimeoutMs?: number;
}

export interface BootedGuest extends AsyncDisposable {
  /** The local port forwarded to the guest's port 22. */
  readonly sshPort: number;
  /** Milliseconds from qemu's start to the login prompt. */
  readonly bootMs: number;
  /** The serial console so far. */
  console(): Promise<string>;
  /** The host keys the guest's sshd offers ("TYPE BASE64" lines), tried until `timeoutMs`. */
  sshHostKeys(timeoutMs?: number, types?: readonly string[]): Promise<string[]>;
  /** Presses the ACPI power button (QMP system_powerdown) and waits for qemu to exit; SIGKILL after `timeoutMs`. Resolves true when the guest powered itself off. */
  powerdown(timeoutMs?: number): Promise<boolean>;
}

const exited = (vm: ChildProcess): boolean => vm.exitCode !== null || vm.signalCode !== null;

/** A local TCP port nobody listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no local port');
  return address.port;
}

/** Boots `image` and resolves once its serial console shows a login prompt. */
export async function bootImage(image: string, options: BootOptions): Promise<BootedGuest> {
  const dir = await mkdtemp(join(tmpdir(), 'sparsify-boot-'));
  const consolePath = join(dir, 'console.log');
  const qmpPath = join(dir, 'qmp.sock');
  let vm: ChildProcess | undefined;
  let stderr = '';
  const dispose = async () => {
    if (vm && !exited(vm)) {
      const gone = once(vm, 'exit');
      vm.kill('SIGKILL');
      await gone;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const sshPort = await freePort();
    const started = Date.now();
    vm = spawn(
      'qemu-system-x86_64',
      [
        ...['-accel', 'tcg', '-machine', 'pc', '-m', String(options.memoryMiB ?? 1024), '-smp', '1'],
        ...['-nodefaults', '-display', 'none', '-serial', `file:${consolePath}`],
        ...['-drive', `file=${image},if=virtio,format=${options.format},cache=writeback`],
        ...['-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${sshPort}-:22`, '-device', 'virtio-net-pci,netdev=n0'],
        ...['-qmp', `unix:${qmpPath},server=on,wait=off`],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    vm.stderr?.on('data', (d) => (stderr += String(d)));
    const readConsole = () => readFile(consolePath, 'utf8').catch(() => '');
    const deadline = started + (options.loginTimeoutMs ?? 10 * 60_000);
    for (;;) {
      // agetty: "HOSTNAME login: " (kernel messages may follow it on the same line).
      if (/\S login: /.test(await readConsole())) break;
      if (exited(vm)) throw new Error(`qemu exited before the login prompt: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
      if (Date.now() > deadline) throw new Error(`no login prompt after ${Math.round((Date.now() - started) / 1000)} s; console ends: ${(await readConsole()).slice(-800)}`);
      await delay(POLL_MS);
    }
    const bootMs = Date.now() - started;
    const running = vm;
    return {
      sshPort,
      bootMs,
      console: readConsole,
      sshHostKeys: (timeoutMs = 3 * 60_000, types?: readonly string[]) => keyscan(sshPort, timeoutMs, types),
      powerdown: (timeoutMs = 3 * 60_000) => powerdown(running, qmpPath, timeoutMs),
      [Symbol.asyncDispose]: dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/**
 * ssh-keyscan through the forwarded port, again until sshd answers (it starts after the prompt
 * may show) with a key of every type asked for (`types`, e.g. ['ed25519']; else any): keyscan
 * makes one connection per type, and under TCG one of them can time out while others answer.
 */
async function keyscan(port: number, timeoutMs: number, types?: readonly string[]): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const { stdout, stderr } = await execFileAsync('ssh-keyscan', ['-T', '20', ...(types ? ['-t', types.join(',')] : []), '-p', String(port), '127.0.0.1'], { timeout: 60_000 });
      const keys = stdout
        .split('\n')
        .filter((l) => l !== '' && !l.startsWith('#'))
        .map((l) => l.split(' ').slice(1, 3).join(' '));
      const complete = types ? types.every((t) => keys.some((k) => k.startsWith(`ssh-${t} `) || k.startsWith(`${t}-`))) : keys.length > 0;
      if (complete) return keys;
      last = stderr.trim();
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await delay(5000);
  }
  throw new Error(`the guest's sshd gave no host key through port ${port} in ${timeoutMs / 1000} s: ${last}`);
}

/** One QMP session: greeting, capabilities, system_powerdown; then waits for qemu to exit. */
async function powerdown(vm: ChildProcess, qmpPath: string, timeoutMs: number): Promise<boolean> {
  if (exited(vm)) return true;
  const gone = once(vm, 'exit');
  const socket = createConnection(qmpPath);
  socket.on('error', () => undefined);
  try {
    await once(socket, 'connect');
    await qmpCommand(socket, undefined);
    await qmpCommand(socket, 'qmp_capabilities');
    await qmpCommand(socket, 'system_powerdown');
  } finally {
    socket.destroy();
  }
  const timer = delay(timeoutMs).then(() => 'timeout' as const);
  if ((await Promise.race([gone.then(() => 'exited' as const), timer])) === 'exited') return true;
  vm.kill('SIGKILL');
  await gone;
  return false;
}

/** Sends `command` (none: only reads the greeting) and resolves at its reply ("return" or "error"; events are skipped). */
async function qmpCommand(socket: import('node:net').Socket, command: string | undefined): Promise<void> {
  let buffered = '';
  const reply = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const message = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        if ('event' in message) continue;
        socket.off('data', onData);
        if ('error' in message) reject(new Error(`QMP ${command}: ${JSON.stringify(message.error)}`));
        else resolve();
        return;
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`QMP closed before the reply to ${command ?? 'the greeting'}`)));
  });
  if (command) socket.write(`${JSON.stringify({ execute: command })}\n`);
  await reply;
}
