/**
 * A qemu-storage-daemon that dies mid-run (OOM killer, kill -9) shows to the NBD client only as
 * a closed connection, which the client must report as the server breaking the protocol. Where
 * the run turns that into the user's error, this asks the daemons first: one that has exited is
 * the real cause, and the message says so.
 */
import { SparsifyError, isSparsifyError } from '../errors.js';
import type { DaemonExit } from '../qemu/daemon.js';
import { stderrTail } from '../util/run.js';

/** A daemon the run started, and what it serves (for the message). */
export interface WatchedDaemon {
  readonly serves: string;
  readonly exited: Promise<DaemonExit>;
}

/**
 * How long to wait for a daemon's exit to be seen after its connection broke: the socket's EOF
 * and the child's SIGCHLD arrive in either order.
 */
const EXIT_NOTICE_MS = 1000;

/** `err`, or a DAEMON_DIED error when a connection broke because one of `daemons` exited. */
export async function explainDaemonDeath(err: unknown, daemons: readonly WatchedDaemon[]): Promise<unknown> {
  if (!isSparsifyError(err, 'NBD_PROTOCOL', 'INTERNAL') || daemons.length === 0) return err;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), EXIT_NOTICE_MS)));
  const dead = await Promise.race([...daemons.map((d) => d.exited.then((exit) => ({ d, exit }))), timeout]);
  clearTimeout(timer);
  if (!dead) return err;
  const how = dead.exit.signal ? `killed by ${dead.exit.signal}` : `exit code ${dead.exit.exitCode ?? '?'}`;
  const said = stderrTail(dead.exit.stderr, 1);
  return new SparsifyError('DAEMON_DIED', `qemu-storage-daemon serving ${dead.d.serves} died (${how})${said ? `: ${said}` : ''}`, {
    cause: err,
    hint: 'no output was kept; check the kernel log (dmesg: the OOM killer?) and run again',
  });
}
