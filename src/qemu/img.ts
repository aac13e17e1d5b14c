/**
 * qemu-img wrappers: info, check, create. qemu's image locking stays on everywhere (no -U), so
 * an image a running VM holds open is refused with IN_USE instead of being read mid-write.
 */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Stats } from 'node:fs';
import type { RunContext } from '../context.js';
import { SparsifyError, cancelledError, isSparsifyError } from '../errors.js';
import { errnoOf, pathError } from '../util/errno.js';
import { killedTool, runTool, spawnTool, stderrTail, ToolFailedError } from '../util/run.js';
import { keepFirstLines } from './daemon.js';
import {
  classifyOpenFailure,
  parseCheckResult,
  parseImageInfo,
  qemuReason,
  rawSizeProblem,
  wrongFormatError,
  type CheckResult,
  type ImageInfo,
} from './img-parse.js';

export type { CheckResult, ImageInfo } from './img-parse.js';

/** Formats `qemu-img check` can verify; for any other format checkImage does nothing. */
const CHECKABLE_FORMATS: readonly string[] = ['qcow2', 'qed', 'vdi', 'vhdx', 'vmdk', 'parallels'];

/** qemu-img check exit codes (qemu-img(1)). */
const CHECK_EXIT = { OK: 0, NOT_COMPLETED: 1, CORRUPT: 2, LEAKS: 3, UNSUPPORTED: 63 } as const;

/** At most this many stderr lines are kept from qemu-img check: a truncated image prints one per cluster. */
const CHECK_STDERR_LINES = 20;

/**
 * Reads what qemu-img knows about an image and its backing chain. Missing file → NOT_FOUND,
 * locked by a running VM → IN_USE, wrong --format / not an image → BAD_IMAGE.
 */
export async function readImageInfo(ctx: RunContext, path: string, opts: { format?: string } = {}): Promise<ImageInfo> {
  const st = await statImage(path);
  // An absolute path keeps qemu from reading "name:with:colons" as a protocol prefix.
  const args = ['info', '--output=json', '--backing-chain', ...formatArgs(opts.format), resolve(path)];
  let stdout: string;
  try {
    ({ stdout } = await runTool(ctx, 'qemu-img', args));
  } catch (err) {
    throw await explainOpenFailure(ctx, err, path, opts.format);
  }
  const info = parseImageInfo(stdout, { path, probed: opts.format === undefined });
  if (info.encrypted) throw encryptedError(path, info.format);
  if (info.format === 'raw') {
    const problem = rawSizeProblem(path, st.isFile() ? st.size : info.virtualSizeBytes);
    if (problem) throw problem;
  }
  return info;
}

/**
 * Runs `qemu-img check` for formats that have one. Corruptions or a check that cannot complete
 * → BAD_IMAGE; leaks alone only cost space and are returned for the report.
 */
export async function checkImage(ctx: RunContext, path: string, format: string): Promise<CheckResult> {
  const unchecked: CheckResult = { checked: false, corruptions: 0, leaks: 0, checkErrors: 0 };
  if (!CHECKABLE_FORMATS.includes(format)) return unchecked;
  const argv = ['check', '--output=json', '-f', format, resolve(path)];
  const result = await spawnTool(ctx, 'qemu-img', argv, { stdout: 'pipe', stderr: [keepFirstLines(CHECK_STDERR_LINES)] });
  if (result.isCanceled || ctx.signal.aborted) throw cancelledError();
  if (result.signal !== undefined) throw killedTool('qemu-img', result.signal);
  const stderr = String(result.stderr ?? '');
  const exitCode = result.exitCode;
  if (exitCode === undefined) {
    throw new SparsifyError('TOOL_FAILED', `qemu-img could not be run: ${String(result.cause)}`, { cause: result.cause });
  }
  if (exitCode === CHECK_EXIT.UNSUPPORTED) return unchecked;
  const cause = new ToolFailedError('qemu-img', argv, exitCode, stderr);
  const known = classifyOpenFailure(stderr, path, cause);
  if (known) throw known;
  const summary = tryParseCheck(String(result.stdout ?? ''));
  if (exitCode === CHECK_EXIT.OK || exitCode === CHECK_EXIT.LEAKS) {
    if (summary && summary.corruptions === 0 && summary.checkErrors === 0) {
      if (summary.leaks > 0) ctx.log.debug(`${path}: qemu-img check found ${summary.leaks} leaked clusters (harmless)`);
      return summary;
    }
  }
  throw damagedError(path, describeDamage(summary, stderr, exitCode), cause);
}

/** What {@link createImage} makes. */
export interface CreateImageOptions {
  readonly path: string;
  readonly format: string;
  readonly sizeBytes: number;
  /** `-o` strings as given (each may itself hold several comma-separated options). */
  readonly options?: readonly string[];
  /**
   * The backing file. Its path is made absolute, unless `asNamed`: then it is written as given
   * (a relative name resolves against the new image's directory, as in the image it came from).
   */
  readonly backing?: { readonly path: string; readonly format: string; readonly asNamed?: boolean };
}

/** Creates an image with `qemu-img create`; bad `-o` options → USAGE with qemu's reason. */
export async function createImage(ctx: RunContext, opts: CreateImageOptions): Promise<void> {
  const options = (opts.options ?? []).filter((o) => o !== '');
  const args = ['create', '-q', '-f', opts.format];
  if (options.length) args.push('-o', options.join(','));
  // The overlay lives in a temp dir: a relative backing name would resolve against that dir.
  if (opts.backing) args.push('-b', opts.backing.asNamed ? opts.backing.path : resolve(opts.backing.path), '-F', opts.backing.format);
  args.push(resolve(opts.path), String(opts.sizeBytes));
  try {
    await runTool(ctx, 'qemu-img', args);
  } catch (err) {
    if (!(err instanceof ToolFailedError)) throw err;
    if (opts.backing) {
      const known = classifyOpenFailure(err.stderr, opts.backing.path, err);
      if (known) throw known;
    }
    const reason = qemuReason(err.stderr).replace(/^[^:]*: /, '');
    if (/Invalid parameter|does not accept value|must be|not supported|Unknown|invalid/i.test(reason)) {
      throw new SparsifyError('USAGE', `cannot create a ${opts.format} image with these options: ${reason}`, {
        cause: err,
        hint: `see 'qemu-img create -f ${opts.format} -o help'`,
      });
    }
    const errno = createErrno(err.stderr);
    if (errno) throw pathError(err, 'file', opts.path, errno);
    throw err;
  }
}

async function statImage(path: string): Promise<Stats> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ENOENT' || errno === 'ENOTDIR') {
      throw new SparsifyError('NOT_FOUND', `${path} does not exist; check the path`, { cause: err });
    }
    throw new SparsifyError('USAGE', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (st.isDirectory()) throw new SparsifyError('USAGE', `${path} is a directory, not a disk image`);
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new SparsifyError('BAD_IMAGE', `${path} is not a disk image (not a regular file or block device)`);
  }
  return st;
}

/** Turns a failed `qemu-img info` into the error a user can act on. */
async function explainOpenFailure(ctx: RunContext, err: unknown, path: string, format: string | undefined): Promise<unknown> {
  if (!(err instanceof ToolFailedError)) return err;
  const known = classifyOpenFailure(err.stderr, path, err);
  if (known) return known;
  if (format !== undefined) {
    const probed = await probeFormat(ctx, path);
    if (probed !== format) return wrongFormatError(path, format, probed, err);
  }
  return new SparsifyError('BAD_IMAGE', `${path} cannot be opened as a disk image (${qemuReason(err.stderr)})`, {
    cause: err,
  });
}

/** The format qemu would guess, or undefined when it cannot open the file at all. */
async function probeFormat(ctx: RunContext, path: string): Promise<string | undefined> {
  try {
    const { stdout } = await runTool(ctx, 'qemu-img', ['info', '--output=json', resolve(path)]);
    return parseImageInfo(stdout, { path, probed: true }).format;
  } catch (err) {
    if (isSparsifyError(err, 'CANCELLED')) throw err;
    return undefined;
  }
}

function formatArgs(format: string | undefined): string[] {
  return format === undefined ? [] : ['-f', format];
}

function tryParseCheck(stdout: string): CheckResult | undefined {
  try {
    return parseCheckResult(stdout);
  } catch {
    return undefined;
  }
}

function describeDamage(summary: CheckResult | undefined, stderr: string, exitCode: number): string {
  const first = stderr.split('\n').find((l) => /^(ERROR|Leaked|Warning)/.test(l))?.replace(/^ERROR:?\s*/, '');
  const example = first ? `, first: ${first.replace(/: offset .*/, '').slice(0, 120)}` : '';
  if (summary && summary.corruptions > 0) return `${summary.corruptions} corruptions${example}`;
  if (summary && summary.checkErrors > 0) return `${summary.checkErrors} check errors${example}`;
  return `check could not complete, exit code ${exitCode}: ${stderrTail(stderr, 1) || 'no output'}`;
}

/** qemu's strerror text in a failed create, as the errno it came from. */
const CREATE_ERRNOS: readonly (readonly [RegExp, string])[] = [
  [/No space left on device/, 'ENOSPC'],
  [/Disk quota exceeded/, 'EDQUOT'],
  [/Permission denied/, 'EACCES'],
  [/Operation not permitted/, 'EPERM'],
  [/Read-only file system/, 'EROFS'],
  [/No such file or directory/, 'ENOENT'],
  [/File name too long/, 'ENAMETOOLONG'],
  [/Not a directory/, 'ENOTDIR'],
  [/Is a directory/, 'EISDIR'],
];

function createErrno(stderr: string): string | undefined {
  return CREATE_ERRNOS.find(([re]) => re.test(stderr))?.[1];
}

/**
 * An encrypted image opens only with its secret (qemu's --object secret), which sparsify does
 * not take: without this check qemu-img check fails and the image would be called damaged.
 */
function encryptedError(path: string, format: string): SparsifyError {
  return new SparsifyError('UNSUPPORTED', `${path} is an encrypted ${format} image; sparsify cannot open encrypted images`, {
    hint: `decrypt it first: qemu-img convert --object secret,id=sec0,file=KEYFILE --image-opts driver=${format},file.filename=${path},encrypt.key-secret=sec0 -O ${format} PLAIN, then sparsify PLAIN`,
  });
}

function damagedError(path: string, what: string, cause: unknown): SparsifyError {
  return new SparsifyError(
    'BAD_IMAGE',
    `${path} is damaged (qemu-img check: ${what}); repair it with 'qemu-img check -r all' on a copy`,
    { cause },
  );
}
