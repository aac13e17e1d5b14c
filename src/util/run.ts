import { execa, type Options as ExecaOptions, type ResultPromise } from 'execa';
import type { RunContext } from '../context.js';
import { SparsifyError, cancelledError } from '../errors.js';
import { errnoOf } from './errno.js';
import { packageOf } from './tools.js';

/** How long a cancelled child gets between SIGTERM and SIGKILL. */
const FORCE_KILL_DELAY_MS = 3000;

/**
 * Every child is started through util-linux setpriv, which sets PR_SET_PDEATHSIG before it
 * execs the program: when sparsify dies, even by SIGKILL, the kernel sends each child this
 * signal (qemu-storage-daemon then flushes and exits instead of holding the image's lock).
 * The signal follows the thread that forked the child: the thread that called spawn, the main
 * thread for the CLI (a library user spawning from a worker thread: the children die with that
 * worker). The setting survives exec (qemu and nbdfuse are not setuid).
 */
export const LAUNCHER = 'setpriv';
/** setpriv's exit code when the program does not exist (util-linux errexec: EX_EXEC_ENOENT). */
const LAUNCHER_ENOENT = 127;

/** The signal a child gets when sparsify dies. */
export type DeathSignal = 'SIGTERM' | 'SIGKILL';

/** The setpriv argv that runs `file args` under the parent-death signal. */
export function launchArgs(file: string, args: readonly string[], deathSignal: DeathSignal = 'SIGTERM'): string[] {
  return ['--pdeathsig', deathSignal, '--', file, ...args];
}

/** Whether a launched child ended because setpriv found no `file` to exec. */
export function launcherFoundNoProgram(exitCode: number | undefined, stderr: string): boolean {
  return exitCode === LAUNCHER_ENOENT && /^setpriv: failed to execute /m.test(stderr);
}

/** The result of one external program. */
export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

/** Options for {@link runTool}. */
export interface RunOptions {
  /** Exit codes that count as success (default: only 0). */
  readonly okExitCodes?: readonly number[];
  readonly input?: string;
  readonly env?: Record<string, string | undefined>;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/** The last lines of a tool's stderr, for one-line messages. */
export function stderrTail(stderr: string, lines = 3): string {
  return stderr.trim().split('\n').slice(-lines).join(' | ');
}

/**
 * Runs one external program with an argv array (never a shell), tied to the run's abort signal.
 * Throws TOOL_MISSING when the program is not installed, CANCELLED on abort, TOOL_FAILED
 * (with argv, exit code and stderr tail in the message and cause) on any other failure.
 */
export async function runTool(
  ctx: RunContext,
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  ctx.log.trace([file, ...args]);
  const okExitCodes = options.okExitCodes ?? [0];
  try {
    const result = await execa(LAUNCHER, launchArgs(file, args), {
      cancelSignal: ctx.signal,
      forceKillAfterDelay: FORCE_KILL_DELAY_MS,
      // Its own process group: a terminal's ^C reaches sparsify only, which decides (in place it
      // finishes the volume first; a copy cancels the child through cancelSignal).
      detached: true,
      reject: false,
      stripFinalNewline: false,
      ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' }),
      ...(options.env ? { env: options.env, extendEnv: true } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
    });
    if (result.isCanceled || ctx.signal.aborted) {
      throw cancelledError();
    }
    if (result.signal !== undefined && !result.timedOut) throw killedTool(file, result.signal);
    const spawnError = result.failed && result.exitCode === undefined ? result.cause : undefined;
    if (isEnoent(spawnError)) throw missingTool(LAUNCHER, spawnError);
    const exitCode = result.exitCode ?? -1;
    const stdout = String(result.stdout ?? '');
    const stderr = String(result.stderr ?? '');
    if (launcherFoundNoProgram(exitCode, stderr)) throw missingTool(file, new Error(stderrTail(stderr, 1)));
    if (!okExitCodes.includes(exitCode)) {
      throw new ToolFailedError(file, args, exitCode, stderr, result.timedOut);
    }
    return { stdout, stderr, exitCode };
  } catch (err) {
    if (err instanceof SparsifyError) throw err;
    if (isEnoent(err)) throw missingTool(LAUNCHER, err);
    throw new SparsifyError('TOOL_FAILED', `${file} could not be run: ${String(err)}`, { cause: err });
  }
}

/** A failed external program: keeps its argv, exit code and the end of its stderr. */
export class ToolFailedError extends SparsifyError {
  constructor(
    readonly file: string,
    readonly args: readonly string[],
    readonly exitCode: number,
    readonly stderr: string,
    readonly timedOut = false,
  ) {
    const why = timedOut ? 'timed out' : `exited with code ${exitCode}`;
    super('TOOL_FAILED', `${file} ${why}: ${stderrTail(stderr) || '(no output)'}`);
  }
}

/**
 * A tool killed by a signal nobody in this run sent: not a verdict on its input (an empty stderr
 * must not read as "cannot be opened"). SIGINT/SIGTERM came from the user.
 */
export function killedTool(file: string, signal: string): SparsifyError {
  if (signal === 'SIGINT' || signal === 'SIGTERM') return new SparsifyError('CANCELLED', 'quit (^C) at user request');
  return new SparsifyError('TOOL_FAILED', `${file} was killed by ${signal}`, { hint: 'check the kernel log (dmesg: the OOM killer?) and run again' });
}

/** Starts a long-running child (a daemon) tied to the run's signal; the caller owns it. */
export function spawnTool(
  ctx: RunContext,
  file: string,
  args: readonly string[],
  options: ExecaOptions = {},
  deathSignal: DeathSignal = 'SIGTERM',
): ResultPromise {
  ctx.log.trace([file, ...args]);
  return execa(LAUNCHER, launchArgs(file, args, deathSignal), {
    cancelSignal: ctx.signal,
    forceKillAfterDelay: FORCE_KILL_DELAY_MS,
    // Like runTool: out of the terminal's process group, so only sparsify gets ^C.
    detached: true,
    reject: false,
    stdin: 'ignore',
    ...options,
  });
}

/** The TOOL_MISSING error for `file`, naming its package. */
export function missingTool(file: string, cause: unknown): SparsifyError {
  return new SparsifyError('TOOL_MISSING', `${file} is not installed`, {
    cause,
    hint: `install the Debian package ${packageOf(file)} (or run scripts/setup)`,
  });
}

function isEnoent(err: unknown): boolean {
  return errnoOf(err) === 'ENOENT';
}
