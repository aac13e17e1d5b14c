/**
 * A long-running helper process (qemu-storage-daemon, nbdfuse) that says it is ready by writing
 * a pid file, and is stopped in order by its owner.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { RunContext } from '../context.js';
import { SparsifyError, cancelledError } from '../errors.js';
import { fullDirError } from '../host/free-space.js';
import { errnoOf } from '../util/errno.js';
import { LAUNCHER, launcherFoundNoProgram, missingTool, spawnTool, stderrTail, type DeathSignal } from '../util/run.js';

/** How a daemon ended. */
export interface DaemonExit {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly stderr: string;
  /** Why it could not even start (ENOENT…). */
  readonly spawnError?: unknown;
  /** It ended because its owner stopped it (stop(), or expectExit() then an unmount): not a death to report. */
  readonly byOwner?: boolean;
}

/** A running daemon; `stop` is idempotent. */
export interface Daemon {
  readonly pid: number;
  readonly exited: Promise<DaemonExit>;
  running(): boolean;
  /** Sends `signal`, waits up to `graceMs`, then SIGKILLs and waits for the exit. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<DaemonExit>;
  /** The owner is about to make it exit another way (unmounting nbdfuse's file): its exit is byOwner. */
  expectExit(): void;
}

/** Options for {@link startDaemon}. */
export interface StartDaemonOptions {
  /** The daemon writes this file once it is ready (qemu-storage-daemon --pidfile, nbdfuse -P). */
  readonly pidFile: string;
  readonly readyTimeoutMs: number;
  /** Turns the stderr of a daemon that exited during startup into the error to throw. */
  readonly explainEarlyExit: (exit: DaemonExit) => Error;
  /** What the daemon gets from the kernel when sparsify dies (default SIGTERM). */
  readonly deathSignal?: DeathSignal;
  /** Variables added to the daemon's environment. */
  readonly env?: Readonly<Record<string, string>>;
}

const POLL_MS = 20;
const STDERR_LINES = 200;
const DEFAULT_STOP_GRACE_MS = 10_000;

/**
 * Starts `file args` in its own process group and returns once its pid file names it. The
 * daemon is detached so that a terminal's ^C reaches only sparsify, which then releases mounts
 * and loop devices before stopping the daemon that serves them; an exit hook still terminates
 * it if Node exits without disposing, and the parent-death signal (spawnTool) if sparsify is
 * killed outright.
 */
export async function startDaemon(ctx: RunContext, file: string, args: readonly string[], opts: StartDaemonOptions): Promise<Daemon> {
  const spawnOptions = {
    cancelSignal: undefined,
    forceKillAfterDelay: false,
    detached: true,
    cleanup: false,
    stdout: 'ignore',
    // A daemon may run for hours: keep the start of its stderr (where startup errors are), not all of it.
    stderr: [keepFirstLines(STDERR_LINES)],
    ...(opts.env ? { env: opts.env } : {}),
  } as const;
  const child = spawnTool(ctx, file, args, spawnOptions, opts.deathSignal);
  let done = false;
  let byOwner = false;
  const pid = child.pid;
  // Only a daemon still alive when its owner asks it to go ends "by the owner": one already
  // killed (a zombie not yet reaped) died.
  const expectExit = (): void => void (byOwner ||= !done && pid !== undefined && isAlive(pid));
  const exited: Promise<DaemonExit> = child.then(
    (r) => ({
      exitCode: r.exitCode,
      signal: r.signal,
      stderr: String(r.stderr ?? ''),
      byOwner,
      ...(r.failed && r.exitCode === undefined && r.signal === undefined ? { spawnError: r.cause } : {}),
    }),
    (err: unknown) => ({ exitCode: undefined, signal: undefined, stderr: '', byOwner, spawnError: err }),
  );
  void exited.then(() => {
    done = true;
    process.off('exit', terminateOnExit);
  });
  // SIGTERM, not SIGKILL: both daemons unmount their FUSE file and flush the image on SIGTERM,
  // where a SIGKILLed FUSE server leaves a dead mount behind.
  function terminateOnExit(): void {
    if (!done && pid !== undefined) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
  process.on('exit', terminateOnExit);
  let stopping: Promise<DaemonExit> | undefined;
  const daemon: Daemon = {
    pid: pid ?? -1,
    exited,
    running: () => !done,
    expectExit,
    stop(signal = 'SIGTERM', graceMs = DEFAULT_STOP_GRACE_MS) {
      expectExit();
      return (stopping ??= stopChild(() => done, (s) => child.kill(s), exited, signal, graceMs));
    },
  };
  if (pid === undefined) throw notStarted(file, await exited);
  try {
    await waitForPidFile(ctx, file, daemon, opts);
  } catch (err) {
    await daemon.stop('SIGTERM', 3000);
    throw err;
  }
  return daemon;
}

function notStarted(file: string, exit: DaemonExit): SparsifyError {
  if (errnoOf(exit.spawnError) === 'ENOENT') return missingTool(LAUNCHER, exit.spawnError);
  return new SparsifyError('TOOL_FAILED', `${file} could not be started: ${String(exit.spawnError)}`, { cause: exit.spawnError });
}

async function waitForPidFile(ctx: RunContext, file: string, daemon: Daemon, opts: StartDaemonOptions): Promise<void> {
  const deadline = Date.now() + opts.readyTimeoutMs;
  for (;;) {
    if (!daemon.running()) {
      const exit = await daemon.exited;
      if (launcherFoundNoProgram(exit.exitCode, exit.stderr)) throw missingTool(file, new Error(stderrTail(exit.stderr, 1)));
      throw opts.explainEarlyExit(exit);
    }
    if (ctx.signal.aborted) throw cancelledError();
    const text = await readFile(opts.pidFile, 'utf8').catch(() => undefined);
    // The pid file is written after every export exists (qemu-storage-daemon(1), nbdfuse(1)).
    if (text?.trim() === String(daemon.pid)) return;
    // Created but empty: its write may have failed for want of space, and the daemon waits on.
    const full = text === '' || Date.now() > deadline ? await fullDirError(dirname(opts.pidFile), new Error('no space for the pid file')) : undefined;
    if (full) throw full;
    if (Date.now() > deadline) {
      throw new SparsifyError('TOOL_FAILED', `${opts.pidFile}: daemon not ready after ${opts.readyTimeoutMs} ms`);
    }
    await delay(POLL_MS);
  }
}

async function stopChild(
  isDone: () => boolean,
  kill: (signal: NodeJS.Signals) => boolean,
  exited: Promise<DaemonExit>,
  signal: NodeJS.Signals,
  graceMs: number,
): Promise<DaemonExit> {
  if (!isDone()) {
    kill(signal);
    const timer = delay(graceMs, 'timeout' as const, { ref: false });
    if ((await Promise.race([exited, timer])) === 'timeout' && !isDone()) kill('SIGKILL');
  }
  return exited;
}

/**
 * Whether process `pid` still runs: a killed child stays a zombie until Node reaps it, and the
 * error its death causes (a refused connection, EIO from its FUSE file) can arrive first.
 */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the command name in parentheses (which may itself hold ") ").
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X' && state !== 'x';
  } catch {
    return false;
  }
}

/** A one-line description of how a daemon ended, for error messages. */
export function describeExit(name: string, exit: DaemonExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.exitCode ?? '?'}`;
  return `${name} ${how}: ${stderrTail(exit.stderr) || '(no output)'}`;
}

/** An execa line transform that keeps the first `max` lines and drops the rest, bounding memory. */
export function keepFirstLines(max: number): (line: unknown) => Generator<unknown, void, unknown> {
  let seen = 0;
  return function* (line: unknown) {
    if (seen++ < max) yield line;
  };
}
