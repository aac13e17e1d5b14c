/** What every long-running function receives: the run's abort signal and its logger. */
export interface Logger {
  /** Shown with -v. */
  debug(message: string): void;
  /** Shown unless -q. */
  info(message: string): void;
  /** Always shown (on stderr), and collected in the report. */
  warn(message: string): void;
  /** With -x: one line per external command, before it runs. */
  trace(argv: readonly string[]): void;
}

/** The run's context: one AbortController per run (see STYLE.md §10). */
export interface RunContext {
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/** A logger that drops everything; for tests and library callers that want silence. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  trace() {},
};

/** A context with a fresh, never-aborted signal and the given logger. */
export function makeContext(log: Logger = silentLogger, signal?: AbortSignal): RunContext {
  return { signal: signal ?? new AbortController().signal, log };
}

/**
 * The same logger with a signal that never aborts: for steps that must not be cut half-way
 * (attaching a loop device, mounting), because a killed `losetup --find` or `mount` may still
 * have attached or mounted, and then nobody knows what to release. Check the real signal after.
 */
export function uninterruptible(ctx: RunContext): RunContext {
  return makeContext(ctx.log);
}
