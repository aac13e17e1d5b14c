import { execa, type Options as ExecaOptions, type ResultPromise } from 'execa';
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import { packageOf } from './tools.js';

/** How long a cancelled child gets between SIGTERM and SIGKILL. */
export const FORCE_KILL_DELAY_MS = 3000;

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
    const result = await execa(file, args, {
      cancelSignal: ctx.signal,
      forceKillAfterDelay: FORCE_KILL_DELAY_MS,
      reject: false,
      stripFinalNewline: false,
      ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' }),
      ...(options.env ? { env: options.env, extendEnv: true } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
    });
    if (result.isCanceled || ctx.signal.aborted) {
      throw new SparsifyError('CANCELLED', 'quit (^C) at user request');
    }
    const spawnError = result.failed && result.exitCode === undefined ? result.cause : undefined;
    if (isEnoent(spawnError)) throw missingTool(file, spawnError);
    const exitCode = result.exitCode ?? -1;
    const stdout = String(result.stdout ?? '');
    const stderr = String(result.stderr ?? '');
    if (!okExitCodes.includes(exitCode)) {
      throw new ToolFailedError(file, args, exitCode, stderr, result.timedOut);
    }
    return { stdout, stderr, exitCode };
  } catch (err) {
    if (err instanceof SparsifyError) throw err;
    if (isEnoent(err)) throw missingTool(file, err);
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

/** Starts a long-running child (a daemon) tied to the run's signal; the caller owns it. */
export function spawnTool(
  ctx: RunContext,
  file: string,
  args: readonly string[],
  options: ExecaOptions = {},
): ResultPromise {
  ctx.log.trace([file, ...args]);
  return execa(file, args, {
    cancelSignal: ctx.signal,
    forceKillAfterDelay: FORCE_KILL_DELAY_MS,
    reject: false,
    stdin: 'ignore',
    ...options,
  });
}

function missingTool(file: string, cause: unknown): SparsifyError {
  return new SparsifyError('TOOL_MISSING', `${file} is not installed`, {
    cause,
    hint: `install the Debian package ${packageOf(file)} (or run scripts/setup)`,
  });
}

function isEnoent(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}
