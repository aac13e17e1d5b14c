/**
 * The one error type of sparsify. Every failure that reaches the CLI is a SparsifyError with a
 * stable `code`, a one-line message that says what to do, and the underlying `cause`.
 */
export type ErrorCode =
  | 'USAGE' // bad command line
  | 'TOOL_MISSING' // an external program is not installed
  | 'TOOL_FAILED' // an external program exited non-zero
  | 'NOT_FOUND' // input file missing
  | 'BAD_IMAGE' // not an image, corrupt, truncated, wrong --format
  | 'BAD_LAYOUT' // broken partition table
  | 'IN_USE' // image locked by another process (a running VM)
  | 'OUTPUT_EXISTS' // output exists and --overwrite not given
  | 'BAD_PATH' // a path given cannot be used: missing directory, permission, read-only, name too long
  | 'UNSUPPORTED' // a combination or feature we do not handle
  | 'NBD_PROTOCOL' // the NBD server broke the protocol
  | 'DAEMON_DIED' // a qemu-storage-daemon sparsify started died mid-run
  | 'NO_SPACE' // no room for temp files or output
  | 'TMP_CHECK' // --check-tmpdir=fail refused the run
  | 'NO_DISCARD' // in-place: the image cannot discard
  | 'VERIFY_FAILED' // --verify found a byte that is not what it must be
  | 'BAD_DOMAIN' // a libvirt domain that is missing or whose definition cannot be read
  | 'DOMAIN_ACTIVE' // a libvirt domain that is not shut off (nothing was touched)
  | 'BAD_KEY' // no key slot of a LUKS volume opens with the --key given
  | 'CANCELLED' // SIGINT/SIGTERM
  | 'INTERNAL';

/** The base error: `code` is stable, `message` is one line, `hint` says what to do next. */
export class SparsifyError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SparsifyError';
    this.code = code;
    this.hint = options.hint;
  }
}

/** True when `err` is a SparsifyError with one of `codes` (any code when none is given). */
export function isSparsifyError(err: unknown, ...codes: ErrorCode[]): err is SparsifyError {
  return err instanceof SparsifyError && (codes.length === 0 || codes.includes(err.code));
}

/** The error of a run stopped by SIGINT/SIGTERM: every layer throws this one, with virt-sparsify's message. */
export function cancelledError(signal?: AbortSignal): SparsifyError {
  // The run's own CANCELLED error when the signal carries one, so a ^C reads the same everywhere.
  const reason: unknown = signal?.reason;
  if (isSparsifyError(reason, 'CANCELLED')) return reason;
  return new SparsifyError('CANCELLED', 'quit (^C) at user request');
}

/** Throws CANCELLED when the signal has been aborted; call it between steps. */
export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelledError();
}

/** Exit codes, documented in --help and the README. */
export const EXIT = {
  OK: 0,
  ERROR: 1,
  /** --check-tmpdir=fail found too little temporary space (as virt-sparsify). */
  TMP_CHECK: 2,
  /** --in-place: the image or its filesystems cannot discard at all (as virt-sparsify). */
  NO_DISCARD: 3,
  /** -d: the domain is not shut off (running, paused, saved); nothing was touched. */
  DOMAIN_ACTIVE: 4,
  /** A batch (-d, --output-dir, several disks): some disks or domains failed; the others are done (the report says which). */
  SOME_FAILED: 5,
} as const;

/** Maps an error to the process exit code. */
export function exitCodeOf(err: unknown): number {
  if (isSparsifyError(err, 'TMP_CHECK')) return EXIT.TMP_CHECK;
  if (isSparsifyError(err, 'NO_DISCARD')) return EXIT.NO_DISCARD;
  if (isSparsifyError(err, 'DOMAIN_ACTIVE')) return EXIT.DOMAIN_ACTIVE;
  return EXIT.ERROR;
}
