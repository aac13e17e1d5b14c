/**
 * The loop both verifiers share: the disk in windows (one block-status pass per window, so a
 * sparse 2 TiB disk costs a few thousand round trips), each window in chunks read with bounded
 * concurrency (memory: concurrency × chunk per side), stopping at the first failing chunk.
 */
import { ExtentSet, type Range } from '../disk/extent-set.js';
import { throwIfCancelled } from '../errors.js';

/** What a chunk visitor finds wrong, at a byte offset of the disk. */
export interface Finding {
  readonly offsetBytes: number;
}

/** Checks one chunk [start, end); returns what is wrong there, or undefined. */
export type ChunkVisitor<F extends Finding> = (chunk: Range) => Promise<F | undefined>;

/** Options of {@link walkChunks}. */
export interface WalkOptions {
  readonly sizeBytes: number;
  readonly signal: AbortSignal;
  /** Default 1 GiB: the span of one block-status pass. */
  readonly windowBytes?: number;
  /** Default 8 MiB: the largest read. */
  readonly chunkBytes?: number;
  /** Default 4 chunks in flight. */
  readonly concurrency?: number;
}

const WINDOW_BYTES = 2 ** 30;
const CHUNK_BYTES = 8 * 2 ** 20;
const CONCURRENCY = 4;

/**
 * Calls `openWindow` for each window of the disk in order, then its visitor on each chunk of the
 * window. At the first finding no new chunk starts; the chunks already started (all of them
 * before it, since chunks start in order) finish, and the finding with the lowest offset is
 * returned: the first one on the disk.
 */
export async function walkChunks<F extends Finding>(
  opts: WalkOptions,
  openWindow: (window: Range) => Promise<ChunkVisitor<F>>,
): Promise<F | undefined> {
  const windowBytes = opts.windowBytes ?? WINDOW_BYTES;
  const chunkBytes = opts.chunkBytes ?? CHUNK_BYTES;
  for (let start = 0; start < opts.sizeBytes; start += windowBytes) {
    throwIfCancelled(opts.signal);
    const end = Math.min(start + windowBytes, opts.sizeBytes);
    const visit = await openWindow({ start, end });
    const chunks: Range[] = [];
    for (let at = start; at < end; at += chunkBytes) chunks.push({ start: at, end: Math.min(at + chunkBytes, end) });
    const found = await visitInOrder(chunks, opts.concurrency ?? CONCURRENCY, opts.signal, visit);
    if (found) return found;
  }
  return undefined;
}

async function visitInOrder<F extends Finding>(
  chunks: readonly Range[],
  concurrency: number,
  signal: AbortSignal,
  visit: ChunkVisitor<F>,
): Promise<F | undefined> {
  let next = 0;
  let stop = false;
  let first: F | undefined;
  const worker = async (): Promise<void> => {
    while (!stop && next < chunks.length) {
      throwIfCancelled(signal);
      const chunk = chunks[next++]!;
      try {
        const found = await visit(chunk);
        if (found && (!first || found.offsetBytes < first.offsetBytes)) first = found;
        if (found) stop = true;
      } catch (err) {
        stop = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, chunks.length) }, worker));
  return first;
}

/** The part of `set` inside `range`. */
export function within(set: ExtentSet, range: Range): ExtentSet {
  return set.intersect(ExtentSet.of(range.start, range.end - range.start));
}

/** The smallest range holding every range of the (sorted) sets, or undefined when all are empty. */
export function spanOf(...sets: ExtentSet[]): Range | undefined {
  let span: Range | undefined;
  for (const { ranges } of sets) {
    if (ranges.length === 0) continue;
    const start = ranges[0]!.start;
    const end = ranges[ranges.length - 1]!.end;
    span = span ? { start: Math.min(span.start, start), end: Math.max(span.end, end) } : { start, end };
  }
  return span;
}

/** Compared against with memcmp, so that the usual case (all zero) costs no loop in JS. */
const ZEROS = new Uint8Array(2 ** 20);

/** The offset of the first non-zero byte of `bytes[from, to)`, or -1. */
export function firstNonZero(bytes: Uint8Array, from: number, to: number): number {
  for (let at = from; at < to; at += ZEROS.length) {
    const end = Math.min(to, at + ZEROS.length);
    if (Buffer.compare(bytes.subarray(at, end), ZEROS.subarray(0, end - at)) === 0) continue;
    for (let i = at; i < end; i++) if (bytes[i] !== 0) return i;
  }
  return -1;
}

/** The offset of the first byte where `a` and `b` differ in [from, to), or -1. */
export function firstDifference(a: Uint8Array, b: Uint8Array, from: number, to: number): number {
  if (Buffer.compare(a.subarray(from, to), b.subarray(from, to)) === 0) return -1;
  for (let i = from; i < to; i++) if (a[i] !== b[i]) return i;
  return -1;
}
