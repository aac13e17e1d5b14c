/**
 * Pure decoders for qemu-img's JSON output and qemu's error text. qemu's output is treated as
 * untrusted: every field is type-checked before use.
 */
import { resolve } from 'node:path';
import { SparsifyError } from '../errors.js';

/** What `qemu-img info` says about an image. */
export interface ImageInfo {
  /** The path as the caller gave it (messages name it this way). */
  readonly path: string;
  readonly format: string;
  readonly virtualSizeBytes: number;
  /** Bytes allocated on the host (0 when qemu cannot tell). */
  readonly actualSizeBytes: number;
  readonly clusterSizeBytes?: number;
  /** The backing file, resolved as qemu resolves it (full-backing-filename). */
  readonly backingFile?: string;
  /** The backing file's name as the header holds it (backing-filename): maybe relative to the image's directory. */
  readonly backingName?: string;
  readonly backingFormat?: string;
  /** Images below this one, nearest first (empty without a backing file). */
  readonly backingChain: readonly { readonly path: string; readonly format: string }[];
  readonly dirtyFlag?: boolean;
  /** qcow2 marked itself corrupt: it will only open read-only. */
  readonly corrupt?: boolean;
  /** qcow2 compat level ("0.10" or "1.1"): 0.10 cannot store zero clusters. */
  readonly qcow2Compat?: string;
  /** No format was given and qemu guessed raw (qemu itself warns about this). */
  readonly probedRaw: boolean;
  /** The image is encrypted (qcow2 LUKS or AES): its data cannot be read without a secret. */
  readonly encrypted: boolean;
  /** Internal snapshots (qcow2): a copy holds only the current state. */
  readonly snapshotCount: number;
}

/** The summary of `qemu-img check`. */
export interface CheckResult {
  /** False when the format has no consistency check (raw, vpc, …). */
  readonly checked: boolean;
  readonly corruptions: number;
  readonly leaks: number;
  readonly checkErrors: number;
  readonly imageEndOffsetBytes?: number;
}

type Json = Record<string, unknown>;

/**
 * Decodes `qemu-img info --output=json [--backing-chain]` (one object, or an array whose first
 * element is the image itself) into an ImageInfo.
 */
export function parseImageInfo(stdout: string, opts: { path: string; probed: boolean }): ImageInfo {
  const parsed = parseJson(stdout, 'qemu-img info');
  const chain = Array.isArray(parsed) ? parsed : [parsed];
  const [top, ...below] = chain.map((entry, i) => asObject(entry, `qemu-img info: entry ${i}`));
  if (!top) throw badOutput('qemu-img info', 'empty backing chain');
  const format = str(top, 'format', true);
  const backingName = str(top, 'backing-filename');
  const backingFile = str(top, 'full-backing-filename') ?? backingName;
  const backingFormat = str(top, 'backing-filename-format');
  const specific = optObject(top['format-specific']);
  const data = specific ? optObject(specific['data']) : undefined;
  const clusterSizeBytes = num(top, 'cluster-size');
  const dirtyFlag = bool(top, 'dirty-flag');
  const corrupt = data ? bool(data, 'corrupt') : undefined;
  const qcow2Compat = specific?.['type'] === 'qcow2' && data ? str(data, 'compat') : undefined;
  return {
    path: opts.path,
    format,
    virtualSizeBytes: num(top, 'virtual-size', true),
    actualSizeBytes: num(top, 'actual-size') ?? 0,
    ...(clusterSizeBytes !== undefined ? { clusterSizeBytes } : {}),
    ...(backingFile !== undefined ? { backingFile } : {}),
    ...(backingName !== undefined ? { backingName } : {}),
    ...(backingFormat !== undefined ? { backingFormat } : {}),
    backingChain: below.map((b) => ({ path: str(b, 'filename', true), format: str(b, 'format', true) })),
    ...(dirtyFlag !== undefined ? { dirtyFlag } : {}),
    ...(corrupt !== undefined ? { corrupt } : {}),
    ...(qcow2Compat !== undefined ? { qcow2Compat } : {}),
    probedRaw: opts.probed && format === 'raw',
    encrypted: bool(top, 'encrypted') === true || (data !== undefined && optObject(data['encrypt']) !== undefined),
    snapshotCount: Array.isArray(top['snapshots']) ? top['snapshots'].length : 0,
  };
}

/** Decodes `qemu-img check --output=json`. */
export function parseCheckResult(stdout: string): CheckResult {
  const obj = asObject(parseJson(stdout, 'qemu-img check'), 'qemu-img check');
  const imageEndOffsetBytes = num(obj, 'image-end-offset');
  return {
    checked: true,
    corruptions: num(obj, 'corruptions') ?? 0,
    leaks: num(obj, 'leaks') ?? 0,
    checkErrors: num(obj, 'check-errors') ?? 0,
    ...(imageEndOffsetBytes !== undefined ? { imageEndOffsetBytes } : {}),
  };
}

/**
 * A raw "image" must be a whole number of 512-byte sectors and not empty; anything else is some
 * other file given by mistake (qemu would silently round its size up).
 */
export function rawSizeProblem(path: string, sizeBytes: number): SparsifyError | undefined {
  if (sizeBytes === 0) return new SparsifyError('BAD_IMAGE', `${path} is not a disk image (it is empty)`);
  if (sizeBytes % 512 !== 0) {
    return new SparsifyError(
      'BAD_IMAGE',
      `${path} is not a disk image (${sizeBytes} bytes is not a multiple of 512); check the file name`,
    );
  }
  return undefined;
}

/** The one-line IN_USE error, naming the locked file. */
function inUseError(path: string, cause?: unknown): SparsifyError {
  return new SparsifyError('IN_USE', `${path} is in use by another process (a running VM?); shut it down first`, {
    cause,
  });
}

/**
 * Maps the stderr of a qemu program that failed to open `path` (qemu-img, qemu-storage-daemon)
 * to a SparsifyError, or undefined when the text is not one of the known failures.
 */
export function classifyOpenFailure(stderr: string, path: string, cause?: unknown): SparsifyError | undefined {
  const text = stderr.replace(/\r/g, '');
  if (/Failed to get (shared )?"(write|read|consistent read|resize)" lock/.test(text)) {
    const locked = /Is another process using the image \[([^\]\n]+)\]/.exec(text)?.[1];
    return inUseError(locked === undefined || samePath(locked, path) ? path : locked, cause);
  }
  const unknown = /Unknown driver '([^']*)'/.exec(text);
  if (unknown) {
    return new SparsifyError('USAGE', `unknown image format '${unknown[1]}'; check --format`, { cause });
  }
  const missing = /Could not open '([^'\n]+)': No such file or directory/.exec(text);
  if (missing?.[1] !== undefined) {
    if (samePath(missing[1], path)) {
      return new SparsifyError('NOT_FOUND', `${path} does not exist; check the path`, { cause });
    }
    return new SparsifyError(
      'NOT_FOUND',
      `backing file ${missing[1]} of ${path} does not exist; restore it, or point the image at it with 'qemu-img rebase -u'`,
      { cause },
    );
  }
  if (/to be a regular file|Is a directory/.test(text)) {
    return new SparsifyError('USAGE', `${path} is not a regular file or block device; give a disk image`, { cause });
  }
  if (/Permission denied/.test(text)) {
    return new SparsifyError('USAGE', `${path}: permission denied; run as a user who can read and lock it`, { cause });
  }
  return undefined;
}

/** The error for an image that is not in the format the user named. */
export function wrongFormatError(path: string, format: string, probed: string | undefined, cause?: unknown): SparsifyError {
  const looks = probed ? ` (it looks like ${probed})` : '';
  return new SparsifyError(
    'BAD_IMAGE',
    `${path} is not a ${format} image${looks}; check --format, or use --convert to choose the output format`,
    { cause },
  );
}

/** The first line of qemu's stderr without the "qemu-img: Could not open 'X': " prefixes. */
export function qemuReason(stderr: string): string {
  const line = stderr.split('\n').find((l) => l.trim() !== '') ?? '';
  return line
    .replace(/^[\w-]+: /, '')
    .replace(/^--\w+ \S+: /, '')
    .replace(/^(Could not open '[^']*': )+/, '')
    .trim()
    .slice(0, 200);
}

function samePath(a: string, b: string): boolean {
  return a === b || resolve(a) === resolve(b);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badOutput(what, `not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
}

function badOutput(what: string, why: string): SparsifyError {
  return new SparsifyError('TOOL_FAILED', `${what} printed unexpected output: ${why}`, {
    hint: 'check that qemu-utils is installed and recent enough (qemu 7.2 or later)',
  });
}

function asObject(value: unknown, what: string): Json {
  const obj = optObject(value);
  if (!obj) throw badOutput(what, 'expected a JSON object');
  return obj;
}

function optObject(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

function str(obj: Json, key: string, required: true): string;
function str(obj: Json, key: string, required?: false): string | undefined;
function str(obj: Json, key: string, required = false): string | undefined {
  const v = obj[key];
  if (typeof v === 'string') return v;
  if (v === undefined && !required) return undefined;
  throw badOutput('qemu-img', `field "${key}" is ${v === undefined ? 'missing' : 'not a string'}`);
}

function num(obj: Json, key: string, required: true): number;
function num(obj: Json, key: string, required?: false): number | undefined;
function num(obj: Json, key: string, required = false): number | undefined {
  const v = obj[key];
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (v === undefined && !required) return undefined;
  throw badOutput('qemu-img', `field "${key}" is ${v === undefined ? 'missing' : 'not a non-negative integer'}`);
}

function bool(obj: Json, key: string): boolean | undefined {
  const v = obj[key];
  if (typeof v === 'boolean') return v;
  if (v === undefined) return undefined;
  throw badOutput('qemu-img', `field "${key}" is not a boolean`);
}
