/**
 * Copy mode's check: the output against what the copier read. Outside the ranges the copier
 * made zero every byte must equal the source's; inside them every byte must read as zero.
 * Ranges that block status reports as zero on both sides (or, for the zeroed ranges, on the
 * output) are not read.
 */
import { ExtentSet } from '../disk/extent-set.js';
import type { BlockSource } from '../disk/types.js';
import { readZeroExtents } from '../disk/zero-map.js';
import { firstDifference, firstNonZero, spanOf, walkChunks, within, type ChunkVisitor, type Finding } from './walk.js';

/** The first byte of the output that is not what the copier promised. */
export interface CopyMismatch extends Finding {
  /** 'differs': not the source's byte; 'not-zero': inside a zeroed range, not zero. */
  readonly kind: 'differs' | 'not-zero';
}

/** What {@link findCopyMismatch} compares. */
export interface CopyComparison {
  /** What the copier read: the input, or the overlay the filesystem pass wrote. */
  readonly source: BlockSource;
  readonly output: BlockSource;
  /** The ranges the copier made zero without reading them (its skip set). */
  readonly zeroed: ExtentSet;
  readonly signal: AbortSignal;
  /** Chunk size of the reads (default 8 MiB); tests make it small. */
  readonly chunkBytes?: number;
  readonly windowBytes?: number;
}

/** The first mismatch between output and source, or undefined when the output is right. */
export function findCopyMismatch(c: CopyComparison): Promise<CopyMismatch | undefined> {
  const opts = {
    sizeBytes: c.source.sizeBytes,
    signal: c.signal,
    ...(c.chunkBytes ? { chunkBytes: c.chunkBytes } : {}),
    ...(c.windowBytes ? { windowBytes: c.windowBytes } : {}),
  };
  return walkChunks(opts, (window) => openWindow(c, window.start, window.end - window.start));
}

async function openWindow(c: CopyComparison, offsetBytes: number, lengthBytes: number): Promise<ChunkVisitor<CopyMismatch>> {
  const [sourceZero, outputZero] = await Promise.all([
    readZeroExtents(c.source, offsetBytes, lengthBytes),
    readZeroExtents(c.output, offsetBytes, lengthBytes),
  ]);
  const window = ExtentSet.of(offsetBytes, lengthBytes);
  const mustBeZero = window.intersect(c.zeroed).subtract(outputZero);
  const mustMatch = window.subtract(c.zeroed).subtract(sourceZero.intersect(outputZero));
  return async (chunk) => {
    const zero = within(mustBeZero, chunk);
    const match = within(mustMatch, chunk);
    const span = spanOf(zero, match);
    if (!span) return undefined;
    const matchSpan = spanOf(match);
    const [out, src] = await Promise.all([
      c.output.read(span.start, span.end - span.start),
      matchSpan ? c.source.read(matchSpan.start, matchSpan.end - matchSpan.start) : undefined,
    ]);
    const notZero = firstInRanges(zero, (r) => firstNonZero(out.subarray(r.start - span.start, r.end - span.start), 0, r.end - r.start));
    const differs = firstInRanges(match, (r) => {
      const a = out.subarray(r.start - span.start, r.end - span.start);
      const b = src!.subarray(r.start - matchSpan!.start, r.end - matchSpan!.start);
      return firstDifference(a, b, 0, a.byteLength);
    });
    if (notZero !== undefined && (differs === undefined || notZero < differs)) return { offsetBytes: notZero, kind: 'not-zero' };
    return differs === undefined ? undefined : { offsetBytes: differs, kind: 'differs' };
  };
}

/** The disk offset of the first hit over sorted ranges; `find` returns an index into the range, or < 0. */
function firstInRanges(set: ExtentSet, find: (r: { start: number; end: number }) => number): number | undefined {
  for (const r of set.ranges) {
    const at = find(r);
    if (at >= 0) return r.start + at;
  }
  return undefined;
}
