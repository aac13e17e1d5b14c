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
import { SparsifyError } from '../errors.js';
import { u64be, viewOf } from '../layout/bytes.js';

// "Header": fixed fields, big-endian.
const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const V2_HEADER_BYTES = 72;
const V3_MIN_HEADER_BYTES = 104;
const MIN_CLUSTER_BITS = 9;
const MAX_CLUSTER_BITS = 21; // qemu's implementation limit: 2 MiB clusters
const V2_REFCOUNT_ORDER = 4; // "For version 2 images, the order is always assumed to be 4"
const MAX_REFCOUNT_ORDER = 6;
const MAX_BACKING_NAME_BYTES = 1023;
const MAX_CRYPT_METHOD = 2; // 0 none, 1 AES, 2 LUKS

/** incompatible_features bits ("Header", bytes 72–79). */
export const QCOW2_INCOMPAT = {
  DIRTY: 1n << 0n,
  CORRUPT: 1n << 1n,
  EXTERNAL_DATA_FILE: 1n << 2n,
  COMPRESSION_TYPE: 1n << 3n,
  EXTENDED_L2: 1n << 4n,
} as const;
const KNOWN_INCOMPAT = 0x1fn;

// "Header extensions".
const EXT_END = 0x00000000;
const EXT_BITMAPS = 0x23852875;
const EXT_CRYPTO_HEADER = 0x0537be77;
const EXT_DATA_FILE_NAME = 0x44415441;
const EXT_HEADER_BYTES = 8;
const BITMAPS_EXT_BYTES = 24;
const CRYPTO_EXT_BYTES = 16;

// "Snapshots" and "Bitmap directory": fixed parts of the variable-length entries, and qemu's limits.
const SNAPSHOT_FIXED_BYTES = 40;
const MAX_SNAPSHOTS = 65536;
const MAX_SNAPSHOT_EXTRA_BYTES = 1024;
const BITMAP_ENTRY_FIXED_BYTES = 24;
const MAX_BITMAPS = 65535;
const MAX_BITMAP_DIRECTORY_BYTES = 64 * 1024 * 1024;

// "Cluster mapping": L1/L2/refcount-table entries are 64-bit; extended L2 entries are 128-bit.
const ENTRY_BYTES = 8;
const EXTENDED_L2_ENTRY_BYTES = 16;
const SECTOR_BYTES = 512; // compressed cluster sizes count 512-byte sectors
const MAX_HOST_OFFSET = 2 ** 56; // offsets are bits 9–55
const TWO_32 = 2 ** 32;

/** Reads happen in pieces of at most this many bytes (a multiple of every entry size). */
const READ_CHUNK_BYTES = 1024 * 1024;
/** Refcount blocks and L2 tables are read this many at a time (a cold cache or NBD gains from overlap). */
const PARALLEL_READS = 16;
/** One bit per host cluster is kept in memory: 256 MiB at most (128 TiB of 64 KiB clusters). */
const MAX_TRACKED_CLUSTERS = 2 ** 31;

/** The fixed qcow2 header. */
export interface Qcow2Header {
  readonly version: 2 | 3;
  readonly clusterBits: number;
  readonly clusterSizeBytes: number;
  readonly virtualSizeBytes: number;
  readonly backingFileOffsetBytes: number;
  readonly backingFileNameBytes: number;
  readonly cryptMethod: number;
  readonly l1Entries: number;
  readonly l1TableOffsetBytes: number;
  readonly refcountTableOffsetBytes: number;
  readonly refcountTableClusters: number;
  readonly snapshotCount: number;
  readonly snapshotsOffsetBytes: number;
  readonly incompatibleFeatures: bigint;
  readonly compatibleFeatures: bigint;
  readonly autoclearFeatures: bigint;
  /** refcount_bits = 1 << refcountOrder. */
  readonly refcountOrder: number;
  readonly headerLengthBytes: number;
}

/** The header extensions that matter for cluster accounting. */
export interface Qcow2Extensions {
  readonly bitmaps?: { readonly count: number; readonly directorySizeBytes: number; readonly directoryOffsetBytes: number };
  readonly cryptoHeader?: { readonly offsetBytes: number; readonly lengthBytes: number };
  readonly externalDataFileName: boolean;
}

/** Free host clusters of a qcow2 file, or why they cannot be trusted. */
export type FreeClusters =
  | {
      readonly usable: true;
      readonly clusterSizeBytes: number;
      /** Whole clusters below the file size whose refcount is 0, as byte ranges of the file. */
      readonly free: ExtentSet;
      readonly freeBytes: number;
    }
  | { readonly usable: false; readonly reason: string };

function headerError(offset: number, what: string): never {
  throw new SparsifyError('BAD_IMAGE', `qcow2 header at offset ${offset}: ${what}`, {
    hint: "check the image with 'qemu-img check'",
  });
}

function clusterAligned(view: DataView, at: number, clusterSizeBytes: number, name: string): number {
  const value = u64be(view, at);
  if (!Number.isSafeInteger(value) || value % clusterSizeBytes !== 0) {
    headerError(at, `${name} ${view.getBigUint64(at)} is not a cluster-aligned file offset`);
  }
  return value;
}

/** Decodes the fixed header ("Header"); throws BAD_IMAGE naming the field's offset. */
export function parseQcow2Header(bytes: Uint8Array): Qcow2Header {
  if (bytes.length < V2_HEADER_BYTES) headerError(0, `only ${bytes.length} bytes, fewer than the ${V2_HEADER_BYTES} of a header`);
  const view = viewOf(bytes);
  if (view.getUint32(0) !== QCOW2_MAGIC) headerError(0, 'bad magic: not a qcow2 image');
  const version = view.getUint32(4);
  if (version !== 2 && version !== 3) headerError(4, `unsupported version ${version} (2 or 3)`);
  if (version === 3 && bytes.length < V3_MIN_HEADER_BYTES) headerError(0, `only ${bytes.length} bytes of a version 3 header`);
  const clusterBits = view.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    headerError(20, `cluster_bits ${clusterBits} is outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  }
  const clusterSizeBytes = 2 ** clusterBits;
  const backingFileOffsetBytes = u64be(view, 8);
  const backingFileNameBytes = view.getUint32(16);
  if (backingFileOffsetBytes !== 0) {
    if (backingFileNameBytes > MAX_BACKING_NAME_BYTES) headerError(16, `backing file name of ${backingFileNameBytes} bytes`);
    if (backingFileOffsetBytes + backingFileNameBytes > clusterSizeBytes) headerError(8, 'backing file name lies outside the header cluster');
  }
  const cryptMethod = view.getUint32(32);
  if (cryptMethod > MAX_CRYPT_METHOD) headerError(32, `unknown crypt_method ${cryptMethod}`);
  const v3 = version === 3;
  const refcountOrder = v3 ? view.getUint32(96) : V2_REFCOUNT_ORDER;
  if (refcountOrder > MAX_REFCOUNT_ORDER) headerError(96, `refcount_order ${refcountOrder} is above ${MAX_REFCOUNT_ORDER}`);
  const headerLengthBytes = v3 ? view.getUint32(100) : V2_HEADER_BYTES;
  if (headerLengthBytes < V3_MIN_HEADER_BYTES && v3) headerError(100, `header_length ${headerLengthBytes} is below ${V3_MIN_HEADER_BYTES}`);
  if (headerLengthBytes % 8 !== 0 || headerLengthBytes > clusterSizeBytes) headerError(100, `bad header_length ${headerLengthBytes}`);
  return {
    version,
    clusterBits,
    clusterSizeBytes,
    virtualSizeBytes: u64be(view, 24),
    backingFileOffsetBytes,
    backingFileNameBytes,
    cryptMethod,
    l1Entries: view.getUint32(36),
    l1TableOffsetBytes: clusterAligned(view, 40, clusterSizeBytes, 'l1_table_offset'),
    refcountTableOffsetBytes: clusterAligned(view, 48, clusterSizeBytes, 'refcount_table_offset'),
    refcountTableClusters: view.getUint32(56),
    snapshotCount: view.getUint32(60),
    snapshotsOffsetBytes: clusterAligned(view, 64, clusterSizeBytes, 'snapshots_offset'),
    incompatibleFeatures: v3 ? view.getBigUint64(72) : 0n,
    compatibleFeatures: v3 ? view.getBigUint64(80) : 0n,
    autoclearFeatures: v3 ? view.getBigUint64(88) : 0n,
    refcountOrder,
    headerLengthBytes,
  };
}

/**
 * Decodes the header extensions that follow the header in cluster 0 ("Header extensions"); they
 * end at the end marker, the backing file name or the end of the cluster. Unknown ones are skipped.
 */
export function parseQcow2Extensions(cluster0: Uint8Array, header: Qcow2Header): Qcow2Extensions {
  const view = viewOf(cluster0);
  const areaEnd = header.backingFileOffsetBytes || header.clusterSizeBytes;
  let bitmaps: Qcow2Extensions['bitmaps'];
  let cryptoHeader: Qcow2Extensions['cryptoHeader'];
  let externalDataFileName = false;
  for (let at = header.headerLengthBytes; at + EXT_HEADER_BYTES <= areaEnd; ) {
    if (at + EXT_HEADER_BYTES > cluster0.length) headerError(at, 'header extension lies beyond the end of the file');
    const type = view.getUint32(at);
    const lengthBytes = view.getUint32(at + 4);
    const dataAt = at + EXT_HEADER_BYTES;
    if (type === EXT_END) break;
    if (dataAt + lengthBytes > Math.min(areaEnd, cluster0.length)) {
      headerError(at, `header extension 0x${type.toString(16)} of ${lengthBytes} bytes overruns the header area`);
    }
    if (type === EXT_BITMAPS) {
      if (lengthBytes < BITMAPS_EXT_BYTES) headerError(at, `bitmaps extension of ${lengthBytes} bytes`);
      bitmaps = { count: view.getUint32(dataAt), directorySizeBytes: u64be(view, dataAt + 8), directoryOffsetBytes: u64be(view, dataAt + 16) };
    } else if (type === EXT_CRYPTO_HEADER) {
      if (lengthBytes < CRYPTO_EXT_BYTES) headerError(at, `encryption header extension of ${lengthBytes} bytes`);
      cryptoHeader = { offsetBytes: u64be(view, dataAt), lengthBytes: u64be(view, dataAt + 8) };
    } else if (type === EXT_DATA_FILE_NAME) {
      externalDataFileName = true;
    }
    at = dataAt + align8(lengthBytes);
  }
  return { bitmaps, cryptoHeader, externalDataFileName };
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Why the header alone forbids trusting the refcounts, or undefined. */
function headerRefusal(header: Qcow2Header, extensions: Qcow2Extensions): string | undefined {
  const incompat = header.incompatibleFeatures;
  if (incompat & QCOW2_INCOMPAT.CORRUPT) return "the image is marked corrupt; repair it with 'qemu-img check -r all'";
  if (incompat & QCOW2_INCOMPAT.DIRTY) {
    return "the image was not closed cleanly (dirty bit set), so its refcounts may be stale; run 'qemu-img check -r all'";
  }
  if (incompat & ~KNOWN_INCOMPAT) return `unknown incompatible features 0x${(incompat & ~KNOWN_INCOMPAT).toString(16)}`;
  if (incompat & QCOW2_INCOMPAT.EXTERNAL_DATA_FILE || extensions.externalDataFileName) {
    return 'guest data lives in an external data file, whose clusters qcow2 does not refcount';
  }
  if (header.refcountTableClusters === 0) return 'the image has no refcount table';
  if (header.snapshotCount > MAX_SNAPSHOTS) return `${header.snapshotCount} internal snapshots (qemu allows ${MAX_SNAPSHOTS})`;
  return undefined;
}

/** A reason to refuse, thrown inside the scan and returned as `usable: false`. */
class Refusal extends Error {}

function refuse(reason: string): never {
  throw new Refusal(reason);
}

/** The state of one scan: which host clusters have refcount 0, and which L2 tables were walked. */
interface Scan {
  readonly reader: BlockReader;
  readonly header: Qcow2Header;
  readonly fileSizeBytes: number;
  readonly clusterSizeBytes: number;
  /** Clusters that start below the file size (the last may be partial). */
  readonly fileClusters: number;
  /** Clusters whose refcount the refcount table describes; the rest are never free. */
  coveredClusters: number;
  /** One bit per cluster below fileClusters: set when its refcount is 0. */
  readonly zero: Uint8Array;
  readonly walkedL2: Set<number>;
}

function isZeroRefcount(scan: Scan, cluster: number): boolean {
  return (scan.zero[cluster >>> 3]! & (1 << (cluster & 7))) !== 0;
}

function markZeroRefcount(scan: Scan, cluster: number): void {
  scan.zero[cluster >>> 3]! |= 1 << (cluster & 7);
}

/** Refuses unless [offset, offset+length) is a safe range inside the file. */
function checkInFile(scan: Scan, offsetBytes: number, lengthBytes: number, what: string): void {
  const end = offsetBytes + lengthBytes;
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(end) || end > scan.fileSizeBytes) {
    refuse(`${what}: bytes ${offsetBytes}..${end} lie outside the ${scan.fileSizeBytes}-byte file`);
  }
}

/** Refuses unless a table starts at a cluster boundary after the header cluster and ends inside the file. */
function checkTable(scan: Scan, offsetBytes: number, lengthBytes: number, what: string): void {
  checkInFile(scan, offsetBytes, lengthBytes, what);
  if (offsetBytes % scan.clusterSizeBytes !== 0) refuse(`${what}: offset ${offsetBytes} is not cluster-aligned`);
  if (offsetBytes < scan.clusterSizeBytes) refuse(`${what}: offset ${offsetBytes} overlaps the header`);
}

/**
 * The safety net: every cluster of [offset, offset+length), which `what` uses, must lie in the
 * file, after the header, and have refcount ≥ 1; otherwise the refcounts cannot be trusted.
 */
function claim(scan: Scan, offsetBytes: number, lengthBytes: number, what: string): void {
  checkInFile(scan, offsetBytes, lengthBytes, what);
  const first = Math.floor(offsetBytes / scan.clusterSizeBytes);
  const last = Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / scan.clusterSizeBytes);
  if (first === 0) refuse(`${what}: offset ${offsetBytes} overlaps the header`);
  for (let cluster = first; cluster <= last; cluster++) {
    if (cluster >= scan.coveredClusters) refuse(`cluster ${cluster}, used by the ${what}, is not covered by the refcount table`);
    if (isZeroRefcount(scan, cluster)) refuse(`refcounts disagree with the ${what} at cluster ${cluster}: it is in use but its refcount is 0`);
  }
}

/**
 * Reads [offset, offset+length) through whole 512-byte sectors (up to the reader's end): an NBD
 * export may refuse reads that are not aligned to its minimum block size.
 */
async function readBytes(scan: Scan, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
  const start = Math.floor(offsetBytes / SECTOR_BYTES) * SECTOR_BYTES;
  const end = Math.min(Math.ceil((offsetBytes + lengthBytes) / SECTOR_BYTES) * SECTOR_BYTES, scan.reader.sizeBytes);
  const bytes = await scan.reader.read(start, end - start);
  return bytes.subarray(offsetBytes - start, offsetBytes - start + lengthBytes);
}

/** Calls `visit` on consecutive pieces of [offset, offset+length), each at most READ_CHUNK_BYTES. */
async function forEachChunk(
  scan: Scan,
  offsetBytes: number,
  lengthBytes: number,
  visit: (bytes: Uint8Array, view: DataView) => Promise<void> | void,
): Promise<void> {
  for (let done = 0; done < lengthBytes; done += READ_CHUNK_BYTES) {
    const bytes = await readBytes(scan, offsetBytes + done, Math.min(READ_CHUNK_BYTES, lengthBytes - done));
    await visit(bytes, viewOf(bytes));
  }
}

/** Reads one cluster at each offset, PARALLEL_READS at a time, and visits them in order. */
async function forEachCluster(scan: Scan, offsets: readonly number[], visit: (bytes: Uint8Array, i: number) => void): Promise<void> {
  for (let i = 0; i < offsets.length; i += PARALLEL_READS) {
    const batch = offsets.slice(i, i + PARALLEL_READS).map((offset) => readBytes(scan, offset, scan.clusterSizeBytes));
    (await Promise.all(batch)).forEach((bytes, j) => visit(bytes, i + j));
  }
}

/** A 64-bit entry as its high and low 32-bit halves (exact; a double cannot hold 64 bits). */
function halves(view: DataView, at: number): [hi: number, lo: number] {
  return [view.getUint32(at), view.getUint32(at + 4)];
}

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

/** "Compressed Clusters Descriptor": x = 62 − (cluster_bits − 8) bits of byte offset, then the count of extra 512-byte sectors. */
function compressedRange(scan: Scan, hi: number, lo: number, what: string): Range {
  const hiOffsetBits = 62 - (scan.header.clusterBits - 8) - 32;
  const start = (hi & ((1 << hiOffsetBits) - 1)) * TWO_32 + lo;
  const extraSectors = (hi & 0x3fffffff) >>> hiOffsetBits;
  if (start >= MAX_HOST_OFFSET) refuse(`a compressed cluster of the ${what} has reserved offset bits set`);
  return { start, end: Math.floor(start / SECTOR_BYTES) * SECTOR_BYTES + (extraSectors + 1) * SECTOR_BYTES };
}

/**
 * "L2 table entry": bit 62 marks a compressed cluster, whose bytes may spill into the next
 * cluster; otherwise bits 9–55 give the data cluster (even for a preallocated zero cluster).
 */
function claimL2(scan: Scan, table: Uint8Array, what: string): void {
  const view = viewOf(table);
  const step = scan.header.incompatibleFeatures & QCOW2_INCOMPAT.EXTENDED_L2 ? EXTENDED_L2_ENTRY_BYTES : ENTRY_BYTES;
  for (let at = 0; at < table.length; at += step) {
    const [hi, lo] = halves(view, at);
    if ((hi >>> 30) & 1) {
      const range = compressedRange(scan, hi, lo, what);
      claim(scan, range.start, range.end - range.start, what);
      continue;
    }
    if (lo & 0x1fe || (hi >>> 24) & 0x3f) refuse(`an L2 entry of the ${what} has reserved bits set`);
    const dataOffsetBytes = (hi & 0xffffff) * TWO_32 + lo - (lo & 0x1ff);
    if (dataOffsetBytes === 0) {
      if (hi >>> 31) refuse(`an L2 entry of the ${what} maps host offset 0, which only an external data file allows`);
      continue;
    }
    if (dataOffsetBytes % scan.clusterSizeBytes !== 0) refuse(`an L2 entry of the ${what} points at unaligned offset ${dataOffsetBytes}`);
    claim(scan, dataOffsetBytes, scan.clusterSizeBytes, what);
  }
}

/** "L1 table entry": bits 9–55 give an L2 table; bits 0–8 and 56–62 are reserved. L2 tables shared with snapshots are walked once. */
async function claimMapping(scan: Scan, l1OffsetBytes: number, l1Entries: number, what: string): Promise<void> {
  if (l1Entries === 0) return;
  const l1Bytes = l1Entries * ENTRY_BYTES;
  checkTable(scan, l1OffsetBytes, l1Bytes, `L1 table of the ${what}`);
  claim(scan, l1OffsetBytes, l1Bytes, what);
  let index = 0;
  await forEachChunk(scan, l1OffsetBytes, l1Bytes, async (bytes, view) => {
    const l2Offsets: number[] = [];
    for (let at = 0; at < bytes.length; at += ENTRY_BYTES, index++) {
      const [hi, lo] = halves(view, at);
      if (lo & 0x1ff || (hi >>> 24) & 0x7f) refuse(`L1 entry ${index} of the ${what} has reserved bits set`);
      const l2OffsetBytes = (hi & 0xffffff) * TWO_32 + lo;
      if (l2OffsetBytes === 0 || scan.walkedL2.has(l2OffsetBytes)) continue;
      scan.walkedL2.add(l2OffsetBytes);
      checkTable(scan, l2OffsetBytes, scan.clusterSizeBytes, `L2 table of L1 entry ${index} of the ${what}`);
      claim(scan, l2OffsetBytes, scan.clusterSizeBytes, what);
      l2Offsets.push(l2OffsetBytes);
    }
    await forEachCluster(scan, l2Offsets, (table) => claimL2(scan, table, what));
  });
}

/**
 * "Snapshot table entry": 40 fixed bytes, extra data, ID and name; each snapshot has its own L1
 * table. Entries start at multiples of 8; qemu writes no padding after the last one.
 */
async function claimSnapshots(scan: Scan): Promise<void> {
  const { snapshotCount, snapshotsOffsetBytes } = scan.header;
  if (snapshotCount === 0) return;
  const l1Tables: { offsetBytes: number; entries: number }[] = [];
  let at = snapshotsOffsetBytes;
  for (let i = 0; i < snapshotCount; i++) {
    at = align8(at);
    checkInFile(scan, at, SNAPSHOT_FIXED_BYTES, `snapshot table entry ${i}`);
    const view = viewOf(await readBytes(scan, at, SNAPSHOT_FIXED_BYTES));
    const extraBytes = view.getUint32(36);
    if (extraBytes > MAX_SNAPSHOT_EXTRA_BYTES) refuse(`snapshot table entry ${i} has ${extraBytes} bytes of extra data`);
    l1Tables.push({ offsetBytes: u64be(view, 0), entries: view.getUint32(8) });
    at += SNAPSHOT_FIXED_BYTES + extraBytes + view.getUint16(12) + view.getUint16(14);
  }
  checkTable(scan, snapshotsOffsetBytes, at - snapshotsOffsetBytes, 'snapshot table');
  claim(scan, snapshotsOffsetBytes, at - snapshotsOffsetBytes, 'snapshot table');
  for (const [i, l1] of l1Tables.entries()) await claimMapping(scan, l1.offsetBytes, l1.entries, `L1/L2 tables of snapshot ${i}`);
}

/** "Bitmap table entry": bits 9–55 give a data cluster (0: all zeros or ones); bits 1–8 and 56–63 are reserved. */
async function claimBitmapTable(scan: Scan, tableOffsetBytes: number, entries: number, what: string): Promise<void> {
  const tableBytes = entries * ENTRY_BYTES;
  if (tableBytes === 0) return;
  checkTable(scan, tableOffsetBytes, tableBytes, `table of ${what}`);
  claim(scan, tableOffsetBytes, tableBytes, what);
  await forEachChunk(scan, tableOffsetBytes, tableBytes, (bytes, view) => {
    for (let at = 0; at < bytes.length; at += ENTRY_BYTES) {
      const [hi, lo] = halves(view, at);
      if (lo & 0x1fe || hi >>> 24) refuse(`an entry of the table of ${what} has reserved bits set`);
      const dataOffsetBytes = (hi & 0xffffff) * TWO_32 + lo - (lo & 0x1ff);
      if (dataOffsetBytes === 0) continue;
      if (dataOffsetBytes % scan.clusterSizeBytes !== 0) refuse(`${what} points at unaligned offset ${dataOffsetBytes}`);
      claim(scan, dataOffsetBytes, scan.clusterSizeBytes, what);
    }
  });
}

/** "Bitmap directory": entries of 24 fixed bytes, extra data and name, padded to 8. */
async function claimBitmaps(scan: Scan, bitmaps: NonNullable<Qcow2Extensions['bitmaps']>): Promise<void> {
  const { count, directoryOffsetBytes, directorySizeBytes } = bitmaps;
  if (count > MAX_BITMAPS || directorySizeBytes > MAX_BITMAP_DIRECTORY_BYTES) {
    refuse(`a bitmap directory of ${count} bitmaps in ${directorySizeBytes} bytes is beyond qemu's limits`);
  }
  checkTable(scan, directoryOffsetBytes, directorySizeBytes, 'bitmap directory');
  claim(scan, directoryOffsetBytes, directorySizeBytes, 'bitmap directory');
  const view = viewOf(await readBytes(scan, directoryOffsetBytes, directorySizeBytes));
  for (let i = 0, at = 0; i < count; i++) {
    if (at + BITMAP_ENTRY_FIXED_BYTES > directorySizeBytes) refuse(`bitmap directory entry ${i} overruns the directory`);
    await claimBitmapTable(scan, u64be(view, at), view.getUint32(at + 8), `bitmap ${i}`);
    at += align8(BITMAP_ENTRY_FIXED_BYTES + view.getUint32(at + 20) + view.getUint16(at + 18));
  }
}

/** Claims everything the image references; refuses at the first cluster with refcount 0. */
async function claimAll(scan: Scan, extensions: Qcow2Extensions, refcountBlocks: readonly number[]): Promise<void> {
  const { header, clusterSizeBytes } = scan;
  if (isZeroRefcount(scan, 0)) refuse('refcounts disagree with the header at cluster 0: it is in use but its refcount is 0');
  claim(scan, header.refcountTableOffsetBytes, header.refcountTableClusters * clusterSizeBytes, 'refcount table');
  if (new Set(refcountBlocks).size !== refcountBlocks.length) refuse('two refcount table entries share one refcount block');
  for (const block of refcountBlocks) claim(scan, block, clusterSizeBytes, 'refcount blocks');
  await claimMapping(scan, header.l1TableOffsetBytes, header.l1Entries, 'L1/L2 tables');
  await claimSnapshots(scan);
  if (extensions.bitmaps) await claimBitmaps(scan, extensions.bitmaps);
  const crypto = extensions.cryptoHeader;
  if (crypto) {
    checkTable(scan, crypto.offsetBytes, crypto.lengthBytes, 'encryption header');
    claim(scan, crypto.offsetBytes, crypto.lengthBytes, 'encryption header');
  }
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

/** The fixed header always fits in the smallest cluster. */
const HEADER_PROBE_BYTES = 2 ** MIN_CLUSTER_BITS;

/**
 * Finds the host clusters of a qcow2 file whose refcount is 0, reading the file's own bytes
 * (`reader` is the container, not the guest disk); `usable: false` says why they cannot be
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
  if (refusal) return { usable: false, reason: refusal };
  const fileClusters = Math.ceil(fileSizeBytes / header.clusterSizeBytes);
  if (fileClusters > MAX_TRACKED_CLUSTERS) return { usable: false, reason: `${fileClusters} clusters are too many to track` };
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
    if (err instanceof Refusal) return { usable: false, reason: err.message };
    throw err;
  }
  const free = freeRanges(scan);
  return { usable: true, clusterSizeBytes: header.clusterSizeBytes, free, freeBytes: free.totalBytes };
}
