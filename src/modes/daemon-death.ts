/**
 * A qemu-storage-daemon (or nbdfuse) that dies mid-run (OOM killer, kill -9) shows to the run
 * only as what its death breaks: a closed NBD connection (which the client must report as the
 * server breaking the protocol), a refused connection, nbdfuse failing to connect, EIO from the
 * FUSE file. Where the run turns a failure into the user's error, this asks the processes first:
 * one that has died is the real cause, and the message says so.
 */
import { SparsifyError, isSparsifyError } from '../errors.js';
import { isAlive, type DaemonExit } from '../qemu/daemon.js';
import { stderrTail } from '../util/run.js';

/** A process the run started, and what it serves (for the message). */
export interface WatchedDaemon {
  readonly serves: string;
  readonly exited: Promise<DaemonExit>;
  /** Without it, the process is only suspected when a connection broke. */
  readonly pid?: number;
  readonly tool?: string;
}

/**
 * How long to wait for a daemon's exit to be seen after its connection broke: the socket's EOF
 * and the child's SIGCHLD arrive in either order.
 */
const EXIT_NOTICE_MS = 1000;

/** `err`, or a DAEMON_DIED error when the run failed because one of `daemons` died. */
export async function explainDaemonDeath(err: unknown, daemons: readonly WatchedDaemon[], kept = 'no output was kept'): Promise<unknown> {
  if (daemons.length === 0 || isSparsifyError(err, 'CANCELLED', 'DAEMON_DIED')) return err;
  // A broken connection: its server's exit may be seen a moment later. Any other failure: only a
  // process already dead counts, so that an error of the user's own costs no wait.
  const broke = isSparsifyError(err, 'NBD_PROTOCOL', 'INTERNAL');
  const suspects = broke ? daemons : daemons.filter((d) => d.pid !== undefined && !isAlive(d.pid));
  if (suspects.length === 0) return err;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), EXIT_NOTICE_MS)));
  const never = new Promise<never>(() => {});
  const deaths = suspects.map((d) => d.exited.then((exit) => (exit.byOwner ? never : { d, exit })));
  const dead = await Promise.race([...deaths, timeout]);
  clearTimeout(timer);
  if (!dead) return err;
  const how = dead.exit.signal ? `killed by ${dead.exit.signal}` : `exit code ${dead.exit.exitCode ?? '?'}`;
  const said = stderrTail(dead.exit.stderr, 1);
  return new SparsifyError('DAEMON_DIED', `${whatDied(dead.d)} died (${how})${said ? `: ${said}` : ''}`, {
    cause: err,
    hint: `${kept}; check the kernel log (dmesg: the OOM killer?) and run again`,
  });
}

/** The process in the message: a daemon serves the disk; guestfish is the appliance working on it. */
function whatDied(d: WatchedDaemon): string {
  if (d.tool === 'guestfish') return `the libguestfs appliance (guestfish) working on ${d.serves}`;
  return `${d.tool ?? 'qemu-storage-daemon'} serving ${d.serves}`;
}
