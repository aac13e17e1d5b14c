/**
 * The copy of --keep-backing: OUT is a qcow2 over IN's backing file, so it must hold, itself,
 * exactly the ranges where the guest would otherwise read something other than what it reads
 * in IN: what IN's top layer (and the overlay's, when an engine wrote) holds, and the free
 * ranges that some lower layer holds data for. Everything else is left to the backing file.
 *
 * Unlike {@link copyBlocks}, the sink does not read as zero: a zero run is written as zeroes
 * with NBD_CMD_FLAG_NO_HOLE, which qemu's qcow2 driver records as zero clusters (the "all
 * zeros" flag of an L2 entry, bit 0, qcow2 v3: docs/interop/qcow2.txt, "Cluster mapping"):
 * no data cluster, and the backing file is no longer read there.
 */
import { ExtentSet, type Range } from '../disk/extent-set.js';
import type { BlockReader, BlockSink } from '../disk/types.js';
import { cancelledError } from '../errors.js';
import type { CopySummary } from '../report/types.js';
import { pushMerged } from './range-math.js';
import { isAllZero } from './zero-scan.js';

/** Bytes read at once; a multiple of any cluster size qemu allows (2 MiB at most). */
const CHUNK_BYTES = 8 * 1024 * 1024;
/** Chunks in flight at once: reads of one overlap the writes of others. */
const CHUNKS_IN_FLIGHT = 4;

/** What {@link copyTopLayer} copies, where to, and how. */
export interface TopLayerCopyOptions {
  /** The disk as the guest reads it: IN through its chain, or the overlay over it. */
  readonly source: BlockReader;
  /** OUT, over the same backing file as IN. */
  readonly sink: BlockSink;
  /** The ranges OUT must hold itself; the rest reads from the backing file. */
  readonly own: ExtentSet;
  /** Free space: made zero where it lies in `own`, never read. */
  readonly zeroed: ExtentSet;
  /** OUT's cluster size: all-zero clusters become zero clusters, others are written whole. */
  readonly clusterBytes: number;
  readonly signal?: AbortSignal;
  /** `doneBytes` of `totalBytes` of `own`, as chunks finish. */
  readonly onProgress?: (doneBytes: number, totalBytes: number) => void;
}

/**
 * Copies the ranges of `own` into the sink: free ones as zeroes, the others read and written
 * cluster by cluster, all-zero clusters as zeroes. Flushes the sink at the end.
 */
export async function copyTopLayer(opts: TopLayerCopyOptions): Promise<CopySummary> {
  const startedMs = performance.now();
  const disk = ExtentSet.of(0, opts.source.sizeBytes);
  const own = opts.own.intersect(disk);
  const zeroed = opts.zeroed.intersect(disk);
  const counts = { read: 0, written: 0, zeroScanned: 0 };
  const totalBytes = own.totalBytes;
  let doneBytes = 0;
  const chunks = chunksOf(own.ranges);
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  for (const chunk of chunks) {
    if (opts.signal?.aborted) failure ??= { error: cancelledError() };
    if (failure) break;
    const task = copyChunk(opts, chunk, zeroed, counts).then(
      () => {
        doneBytes += chunk.end - chunk.start;
        opts.onProgress?.(doneBytes, totalBytes);
      },
      (error: unknown) => {
        failure ??= { error };
      },
    );
    const tracked = task.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    if (inFlight.size >= CHUNKS_IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure) throw failure.error;
  await opts.sink.flush();
  const skippedFreeBytes = zeroed.totalBytes;
  return {
    totalBytes: opts.source.sizeBytes,
    dataBytesWritten: counts.written,
    zeroExtentBytes: 0,
    zeroScannedBytes: counts.zeroScanned,
    skippedFreeBytes,
    readBytes: counts.read,
    keptInBackingBytes: opts.source.sizeBytes - skippedFreeBytes - counts.read,
    elapsedMs: performance.now() - startedMs,
  };
}

/** `ranges` cut at every multiple of CHUNK_BYTES. */
function chunksOf(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    for (let start = r.start; start < r.end; ) {
      const end = Math.min(r.end, (Math.floor(start / CHUNK_BYTES) + 1) * CHUNK_BYTES);
      out.push({ start, end });
      start = end;
    }
  }
  return out;
}

async function copyChunk(opts: TopLayerCopyOptions, chunk: Range, zeroed: ExtentSet, counts: { read: number; written: number; zeroScanned: number }): Promise<void> {
  const { sink, source } = opts;
  const whole = ExtentSet.from([chunk]);
  const writes: Promise<void>[] = [];
  try {
    for (const free of whole.intersect(zeroed).ranges) writes.push(sink.writeZeroes(free.start, free.end - free.start, false));
    for (const used of whole.subtract(zeroed).ranges) {
      const buf = Buffer.from(await source.read(used.start, used.end - used.start));
      counts.read += buf.length;
      const { data, zero } = splitByCluster(buf, used.start, opts.clusterBytes);
      for (const d of data) {
        writes.push(sink.write(d.start, buf.subarray(d.start - used.start, d.end - used.start)));
        counts.written += d.end - d.start;
      }
      for (const z of zero) {
        writes.push(sink.writeZeroes(z.start, z.end - z.start, false));
        counts.zeroScanned += z.end - z.start;
      }
    }
  } finally {
    // Every write is awaited, even after a failed read: none is left to reject unheard.
    const settled = await Promise.allSettled(writes);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/** The clusters (clipped to the buffer) of `buf`, which holds the disk from `startBytes`, that hold data, and those that are all zero. */
export function splitByCluster(buf: Buffer, startBytes: number, clusterBytes: number): { data: Range[]; zero: Range[] } {
  const data: Range[] = [];
  const zero: Range[] = [];
  const endBytes = startBytes + buf.length;
  for (let at = startBytes; at < endBytes; ) {
    const next = Math.min(endBytes, (Math.floor(at / clusterBytes) + 1) * clusterBytes);
    pushMerged(isAllZero(buf, at - startBytes, next - startBytes) ? zero : data, at, next);
    at = next;
  }
  return { data, zero };
}
