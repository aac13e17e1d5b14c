import { ExtentSet, type Range } from '../disk/extent-set.js';
import type { BlockSource } from '../disk/types.js';
import { totalBytes } from './range-math.js';
import { ZeroExtentCursor } from './zero-extents.js';

/**
 * One unit of copy work. Chunks come in disk order and their spans tile the disk:
 * [spanStartBytes, startBytes) is a run known to be zero (skipped or zero extents) and
 * [startBytes, endBytes) is the buffer to read and scan.
 */
export interface Chunk {
  readonly index: number;
  readonly spanStartBytes: number;
  readonly startBytes: number;
  readonly endBytes: number;
  /** The bytes to read, sorted, inside the buffer; the rest of the buffer reads as zero. */
  readonly reads: readonly Range[];
  /** `reads` rounded out to whole granules: only these parts of the buffer are scanned and written. */
  readonly granules: readonly Range[];
  /** Bytes in this chunk's window that the source said read as zero (and were not skipped). */
  readonly zeroExtentBytes: number;
}

/** The sizes that shape the plan; `chunkBytes` is a multiple of `granuleBytes`. */
export interface PlanSizes {
  readonly chunkBytes: number;
  readonly granuleBytes: number;
}

/**
 * Cuts the disk minus `skip` minus the source's zero extents into chunks on a grid of
 * `chunkBytes`, so that chunk and granule boundaries agree. Whole windows with nothing to read
 * produce no chunk, and the walk jumps over skipped ranges instead of stepping through them.
 */
export async function* planChunks(source: BlockSource, skip: ExtentSet, sizes: PlanSizes): AsyncGenerator<Chunk> {
  const sizeBytes = source.sizeBytes;
  const copy = ExtentSet.of(0, sizeBytes).subtract(skip.clip(sizeBytes)).ranges;
  const cursor = source.canExtents ? new ZeroExtentCursor(source) : undefined;
  let i = 0;
  let posBytes = 0;
  let spanStartBytes = 0;
  let index = 0;
  while (i < copy.length) {
    const first = Math.max(copy[i]!.start, posBytes);
    const windowStart = first - (first % sizes.chunkBytes);
    const windowEnd = Math.min(windowStart + sizes.chunkBytes, sizeBytes);
    const wanted: Range[] = [];
    while (i < copy.length && copy[i]!.start < windowEnd) {
      const r = copy[i]!;
      wanted.push({ start: Math.max(r.start, posBytes), end: Math.min(r.end, windowEnd) });
      if (r.end > windowEnd) break;
      i++;
    }
    posBytes = windowEnd;
    const reads = cursor ? await withoutZeros(cursor, wanted) : wanted;
    if (reads.length === 0) continue;
    const granules = roundOut(reads, sizes.granuleBytes, sizeBytes);
    const startBytes = granules[0]!.start;
    const endBytes = granules[granules.length - 1]!.end;
    const zeroExtentBytes = totalBytes(wanted) - totalBytes(reads);
    yield { index: index++, spanStartBytes, startBytes, endBytes, reads, granules, zeroExtentBytes };
    spanStartBytes = endBytes;
  }
}

/**
 * The bytes {@link planChunks} will have read once it is done (the sum of every chunk's `reads`):
 * one walk of the same plan, the source's extents asked for again, nothing read. Memory stays
 * that of one chunk whatever the disk's size.
 */
export async function countReadBytes(source: BlockSource, skip: ExtentSet, sizes: PlanSizes): Promise<number> {
  let bytes = 0;
  for await (const chunk of planChunks(source, skip, sizes)) bytes += totalBytes(chunk.reads);
  return bytes;
}

async function withoutZeros(cursor: ZeroExtentCursor, wanted: Range[]): Promise<Range[]> {
  const zeros: Range[] = [];
  for (const r of wanted) zeros.push(...(await cursor.zerosIn(r.start, r.end)));
  if (zeros.length === 0) return wanted;
  return [...ExtentSet.from(wanted).subtract(ExtentSet.from(zeros)).ranges];
}

/** Rounds sorted ranges out to granule boundaries (clipped to the disk) and merges them. */
function roundOut(ranges: readonly Range[], granuleBytes: number, sizeBytes: number): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    const start = r.start - (r.start % granuleBytes);
    const end = Math.min(Math.ceil(r.end / granuleBytes) * granuleBytes, sizeBytes);
    const last = out[out.length - 1];
    if (last && start <= last.end) out[out.length - 1] = { start: last.start, end: Math.max(last.end, end) };
    else out.push({ start, end });
  }
  return out;
}
