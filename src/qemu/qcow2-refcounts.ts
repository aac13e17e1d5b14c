/**
 * Which host clusters of a qcow2 file are free by its refcounts (qemu docs/interop/qcow2.txt,
 * "Host cluster management"), so that in-place sparsify can punch them out of the host file.
 *
 * Punching a cluster in use destroys data, so the answer is cross-checked: every cluster that a
 * known structure references (header, refcount table and blocks, active and snapshot L1/L2
 * tables, standard and compressed data, snapshot table, bitmaps, encryption header) must have
 * refcount ≥ 1, or the whole answer is refused. The answer holds only while nobody writes the
 * image. Byte offsets are `number`, exact to 2^53; a larger 64-bit field reads as Infinity and
 * fails every bounds check.
 */
import { ExtentSet, type Range } from '../disk/extent-set.js';
import type { BlockReader } from '../disk/types.js';
import { refused, type Verdict } from '../util/verdict.js';
import { HEADER_PROBE_BYTES, headerRefusal, parseQcow2Extensions, parseQcow2Header } from './qcow2-header.js';
import { claimAll } from './qcow2-references.js';
import {
  checkTable,
  ENTRY_BYTES,
  forEachChunk,
  forEachCluster,
  halves,
  isZeroRefcount,
  markZeroRefcount,
  Refusal,
  refuse,
  TWO_32,
  type Scan,
} from './qcow2-scan.js';

export { parseQcow2Extensions, parseQcow2Header, QCOW2_INCOMPAT, type Qcow2Extensions, type Qcow2Header } from './qcow2-header.js';

/** One bit per host cluster is kept in memory: 256 MiB at most (128 TiB of 64 KiB clusters). */
const MAX_TRACKED_CLUSTERS = 2 ** 31;

/** Free host clusters of a qcow2 file, or why they cannot be trusted. */
export type FreeClusters = Verdict<{
  readonly clusterSizeBytes: number;
  /** Whole clusters below the file size whose refcount is 0, as byte ranges of the file. */
  readonly free: ExtentSet;
  readonly freeBytes: number;
}>;

function overlaps(aStart: number, aLength: number, bStart: number, bLength: number): boolean {
  return aStart < bStart + bLength && bStart < aStart + aLength;
}

/** A refcount block is one cluster, after the header, and apart from the refcount and L1 tables. */
function checkRefcountBlock(scan: Scan, blockOffsetBytes: number, index: number): void {
  const { header, clusterSizeBytes } = scan;
  const what = `refcount block of refcount table entry ${index}`;
  checkTable(scan, blockOffsetBytes, clusterSizeBytes, what);
  const tableBytes = header.refcountTableClusters * clusterSizeBytes;
  if (overlaps(blockOffsetBytes, clusterSizeBytes, header.refcountTableOffsetBytes, tableBytes)) refuse(`${what}: it overlaps the refcount table`);
  if (overlaps(blockOffsetBytes, clusterSizeBytes, header.l1TableOffsetBytes, header.l1Entries * ENTRY_BYTES)) {
    refuse(`${what}: it overlaps the L1 table`);
  }
}

/**
 * "Refcount table entry" 0: "the corresponding refcount block has not yet been allocated. All
 * refcounts managed by this refcount block are 0." qemu leaves such holes when the file grew past
 * its last allocation. Those clusters count as free only below the file size (nothing else is
 * tracked) and only if the cross-check later finds no structure that uses them.
 */
function markZeroRange(scan: Scan, firstCluster: number, count: number): void {
  const end = Math.min(firstCluster + count, scan.fileClusters);
  for (let cluster = firstCluster; cluster < end; cluster++) markZeroRefcount(scan, cluster);
}

/** "Refcount block entry": refcount_bits wide, big-endian; sub-byte entries start at the least significant bit. */
function markZeroEntries(scan: Scan, block: Uint8Array, firstCluster: number, count: number): void {
  const bits = 2 ** scan.header.refcountOrder;
  const n = Math.min(count, scan.fileClusters - firstCluster);
  if (bits < 8) {
    const mask = (1 << bits) - 1;
    for (let i = 0; i < n; i++) {
      const bit = i * bits;
      if (((block[bit >>> 3]! >>> (bit & 7)) & mask) === 0) markZeroRefcount(scan, firstCluster + i);
    }
    return;
  }
  const width = bits / 8;
  for (let i = 0; i < n; i++) {
    let zero = true;
    for (let b = i * width; zero && b < (i + 1) * width; b++) zero = block[b] === 0;
    if (zero) markZeroRefcount(scan, firstCluster + i);
  }
}

/** Reads the refcount table and its blocks into `scan.zero`; returns the offsets of the blocks. */
async function readRefcounts(scan: Scan): Promise<number[]> {
  const { header, clusterSizeBytes } = scan;
  const tableBytes = header.refcountTableClusters * clusterSizeBytes;
  checkTable(scan, header.refcountTableOffsetBytes, tableBytes, 'refcount table');
  const perBlock = (clusterSizeBytes * 8) / 2 ** header.refcountOrder;
  scan.coveredClusters = Math.min(scan.fileClusters, (tableBytes / ENTRY_BYTES) * perBlock);
  const blocks: number[] = [];
  let index = 0;
  await forEachChunk(scan, header.refcountTableOffsetBytes, tableBytes, async (bytes, view) => {
    const toRead: { offsetBytes: number; firstCluster: number }[] = [];
    for (let at = 0; at < bytes.length; at += ENTRY_BYTES, index++) {
      const [hi, lo] = halves(view, at);
      if (lo & 0x1ff) refuse(`refcount table entry ${index} has reserved bits 0-8 set`);
      const blockOffsetBytes = hi * TWO_32 + lo;
      const firstCluster = index * perBlock;
      if (blockOffsetBytes === 0) {
        markZeroRange(scan, firstCluster, perBlock);
        continue;
      }
      checkRefcountBlock(scan, blockOffsetBytes, index);
      blocks.push(blockOffsetBytes);
      if (firstCluster < scan.fileClusters) toRead.push({ offsetBytes: blockOffsetBytes, firstCluster });
    }
    const offsets = toRead.map((b) => b.offsetBytes);
    await forEachCluster(scan, offsets, (block, i) => markZeroEntries(scan, block, toRead[i]!.firstCluster, perBlock));
  });
  return blocks;
}

/** Whole clusters below the file size and inside the refcount table's reach whose refcount is 0. */
function freeRanges(scan: Scan): ExtentSet {
  const size = scan.clusterSizeBytes;
  const limit = Math.min(Math.floor(scan.fileSizeBytes / size), scan.coveredClusters);
  const ranges: Range[] = [];
  let runStart = -1;
  for (let cluster = 0; cluster <= limit; cluster++) {
    if (runStart < 0 && (cluster & 7) === 0 && cluster + 8 <= limit && scan.zero[cluster >>> 3] === 0) {
      cluster += 7;
      continue;
    }
    const free = cluster < limit && isZeroRefcount(scan, cluster);
    if (free && runStart < 0) runStart = cluster;
    if (!free && runStart >= 0) {
      ranges.push({ start: runStart * size, end: cluster * size });
      runStart = -1;
    }
  }
  return ExtentSet.from(ranges);
}

/**
 * Finds the host clusters of a qcow2 file whose refcount is 0, reading the file's own bytes
 * (`reader` is the container, not the guest disk); `ok: false` says why they cannot be
 * trusted. Throws BAD_IMAGE when the header is not a qcow2 header.
 */
export async function readFreeClusters(reader: BlockReader, fileSizeBytes: number): Promise<FreeClusters> {
  if (!Number.isSafeInteger(fileSizeBytes) || fileSizeBytes < 0 || fileSizeBytes > reader.sizeBytes) {
    throw new RangeError(`a file size of ${fileSizeBytes} bytes does not fit the ${reader.sizeBytes}-byte reader`);
  }
  const header = parseQcow2Header(await reader.read(0, Math.min(fileSizeBytes, HEADER_PROBE_BYTES)));
  const cluster0 = await reader.read(0, Math.min(fileSizeBytes, header.clusterSizeBytes));
  const extensions = parseQcow2Extensions(cluster0, header);
  const refusal = headerRefusal(header, extensions);
  if (refusal) return refused(refusal);
  const fileClusters = Math.ceil(fileSizeBytes / header.clusterSizeBytes);
  if (fileClusters > MAX_TRACKED_CLUSTERS) return refused(`${fileClusters} clusters are too many to track`);
  const scan: Scan = {
    reader,
    header,
    fileSizeBytes,
    clusterSizeBytes: header.clusterSizeBytes,
    fileClusters,
    coveredClusters: 0,
    zero: new Uint8Array(Math.ceil(fileClusters / 8)),
    walkedL2: new Set(),
  };
  try {
    await claimAll(scan, extensions, await readRefcounts(scan));
  } catch (err) {
    if (err instanceof Refusal) return refused(err.message);
    throw err;
  }
  const free = freeRanges(scan);
  return { ok: true, clusterSizeBytes: header.clusterSizeBytes, free, freeBytes: free.totalBytes };
}
