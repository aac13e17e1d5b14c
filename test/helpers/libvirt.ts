/**
 * A private libvirtd for one test file: started in the foreground as a child of the test
 * process, in a mount namespace of its own whose /etc/libvirt, /run/libvirt, /var/lib/libvirt,
 * /var/log/libvirt and /var/cache/libvirt are directories under one temporary root, so it never
 * sees nor disturbs a system instance (its domains, sockets, state). Its socket lives in that
 * root too, reachable from outside the namespace: the tests pass `-c URI`.
 *
 * Debian 12 packages libvirtd only (no virtqemud). qemu.conf runs qemu as root with no security
 * driver, cgroups or per-domain namespaces (none of which this machine's container offers), and
 * qemu's output goes to a file, so no virtlogd is needed. Domains must be `type='qemu'` (TCG):
 * KVM is not usable here.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The system paths the daemon's namespace replaces, each with the directory standing in for it. */
const BOUND = [
  ['/etc/libvirt', 'etc'],
  ['/run/libvirt', 'run'],
  ['/var/lib/libvirt', 'lib'],
  ['/var/log/libvirt', 'log'],
  ['/var/cache/libvirt', 'cache'],
] as const;

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

/** A running private libvirtd. */
export interface Libvirtd {
  /** The connection URI for `virsh -c` and `sparsify -c`. */
  readonly uri: string;
  /** Its temporary root (config, state, logs, socket). */
  readonly root: string;
  /** Runs `virsh -c URI ARGS`; rejects with virsh's stderr on failure. */
  virsh(args: readonly string[]): Promise<string>;
  /** Destroys every running domain, stops the daemon, kills any qemu it left, removes its root. Idempotent. */
  stop(): Promise<void>;
}

const QEMU_CONF = `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
cgroup_controllers = [ ]
`;

function libvirtdConf(socketDir: string): string {
  return `unix_sock_dir = "${socketDir}"
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
`;
}

/** The namespace's script: bind each stand-in over its system path, then become libvirtd. */
const START_SCRIPT = `set -e
root=$1; shift
while [ $# -gt 0 ]; do mount --bind "$root/$2" "$1"; shift 2; done
exec libvirtd --config "$root/etc/libvirtd.conf" --pid-file "$root/libvirtd.pid"`;

/** Starts a private libvirtd and waits until virsh connects to it. */
export async function startLibvirtd(): Promise<Libvirtd> {
  const root = await mkdtemp(join(tmpdir(), 'sparsify-libvirtd-'));
  const socketDir = join(root, 'sock');
  await mkdir(socketDir);
  for (const [, name] of BOUND) await mkdir(join(root, name));
  await writeFile(join(root, 'etc', 'libvirtd.conf'), libvirtdConf(socketDir));
  await writeFile(join(root, 'etc', 'qemu.conf'), QEMU_CONF);
  // The mount points must exist on the host; those made here are removed again by stop().
  const made: string[] = [];
  for (const [path] of BOUND) if ((await mkdir(path, { recursive: true })) !== undefined) made.push(path);
  const uri = `qemu:///system?socket=${socketDir}/libvirt-sock`;
  const child = spawn(
    'setpriv',
    ['--pdeathsig', 'SIGTERM', '--', 'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', START_SCRIPT, 'sh', root, ...BOUND.flat()],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr?.on('data', (d) => (log = (log + String(d)).slice(-8000)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const virsh = async (args: readonly string[]) => {
    const { stdout } = await execFileAsync('virsh', ['-c', uri, ...args], { maxBuffer: 16 << 20 });
    return stdout;
  };
  let stopped: Promise<void> | undefined;
  const daemon: Libvirtd = {
    uri,
    root,
    virsh,
    stop: () => (stopped ??= stopDaemon(child, exited, daemon, made)),
  };
  try {
    await waitReady(virsh, exited, () => log);
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  return daemon;
}

async function waitReady(virsh: Libvirtd['virsh'], exited: Promise<number | null>, log: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let ended = false;
  void exited.then(() => (ended = true));
  for (;;) {
    if (ended) throw new Error(`libvirtd exited before it was ready: ${log().slice(-2000)}`);
    try {
      await virsh(['version']);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`libvirtd not ready after ${READY_TIMEOUT_MS} ms: ${String(err)} ${log().slice(-2000)}`);
    }
    await sleep(200);
  }
}

async function stopDaemon(child: ChildProcess, exited: Promise<number | null>, daemon: Libvirtd, made: readonly string[]): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const running = await daemon.virsh(['list', '--name', '--state-running', '--state-paused']).catch(() => '');
    for (const name of running.split('\n').map((n) => n.trim()).filter(Boolean)) {
      await daemon.virsh(['destroy', name]).catch(() => undefined);
    }
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
  // A qemu the daemon started and did not end (it leaves domains running when it exits).
  const pidDir = join(daemon.root, 'run', 'qemu');
  for (const name of await readdir(pidDir).catch(() => [] as string[])) {
    if (!name.endsWith('.pid')) continue;
    const pid = Number((await readFile(join(pidDir, name), 'utf8').catch(() => '')).trim());
    if (pid > 0 && (await isQemu(pid))) process.kill(pid, 'SIGKILL');
  }
  await rm(daemon.root, { recursive: true, force: true });
  for (const path of made) {
    // libvirt's clients (virsh, run outside the namespace) leave their identity token here.
    if (path === '/run/libvirt') await rm(join(path, 'common'), { recursive: true, force: true });
    await rmdir(path).catch(() => undefined);
  }
}

async function isQemu(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.startsWith('/usr/bin/qemu-system');
}

/** A minimal domain: TCG, no network, no graphics; each disk as libvirt's <disk> element. */
export function domainXml(name: string, disks: readonly string[]): string {
  return `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${disks.join('\n')}
  </devices>
</domain>
`;
}

/** A <disk> element for a file disk. */
export function fileDisk(path: string, format: string, target: string, extra = ''): string {
  return `    <disk type='file' device='disk'>
      <driver name='qemu' type='${format}'/>
      <source file='${path}'/>
      <target dev='${target}' bus='virtio'/>${extra}
    </disk>`;
}
