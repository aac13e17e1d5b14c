/**
 * The walks that claim every cluster a known qcow2 structure references (qemu
 * docs/interop/qcow2.txt): refcount table and blocks, active and snapshot L1/L2 tables, standard
 * and compressed data, snapshot table, bitmaps and the encryption header. Each claimed cluster
 * must have refcount ≥ 1, or the scan refuses.
 */
import type { Range } from '../disk/extent-set.js';
import { u64be, viewOf } from '../binary/bytes.js';
import { align8, QCOW2_INCOMPAT, type Qcow2Extensions } from './qcow2-header.js';
import {
  checkInFile,
  checkTable,
  claim,
  ENTRY_BYTES,
  forEachChunk,
  forEachCluster,
  halves,
  isZeroRefcount,
  readBytes,
  refuse,
  SECTOR_BYTES,
  TWO_32,
  type Scan,
} from './qcow2-scan.js';

// "Snapshots" and "Bitmap directory": fixed parts of the variable-length entries, and qemu's limits.
const SNAPSHOT_FIXED_BYTES = 40;
const MAX_SNAPSHOT_EXTRA_BYTES = 1024;
const BITMAP_ENTRY_FIXED_BYTES = 24;
const MAX_BITMAPS = 65535;
const MAX_BITMAP_DIRECTORY_BYTES = 64 * 1024 * 1024;

// "Cluster mapping": extended L2 entries are 128-bit.
const EXTENDED_L2_ENTRY_BYTES = 16;
const MAX_HOST_OFFSET = 2 ** 56; // offsets are bits 9–55

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
export async function claimAll(scan: Scan, extensions: Qcow2Extensions, refcountBlocks: readonly number[]): Promise<void> {
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
