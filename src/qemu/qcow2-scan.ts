/**
 * The state of one qcow2 refcount scan and the checks and reads every walk shares: a cluster in
 * use must have refcount ≥ 1 (`claim`), or the scan refuses with a `Refusal`.
 */
import type { BlockReader } from '../disk/types.js';
import { viewOf } from '../binary/bytes.js';
import type { Qcow2Header } from './qcow2-header.js';

// "Cluster mapping": L1/L2/refcount-table entries are 64-bit.
export const ENTRY_BYTES = 8;
export const SECTOR_BYTES = 512; // compressed cluster sizes count 512-byte sectors
export const TWO_32 = 2 ** 32;

/** Reads happen in pieces of at most this many bytes (a multiple of every entry size). */
const READ_CHUNK_BYTES = 1024 * 1024;
/** Refcount blocks and L2 tables are read this many at a time (a cold cache or NBD gains from overlap). */
const PARALLEL_READS = 16;

/** A reason to refuse, thrown inside the scan and returned as `ok: false`. */
export class Refusal extends Error {}

export function refuse(reason: string): never {
  throw new Refusal(reason);
}

/** The state of one scan: which host clusters have refcount 0, and which L2 tables were walked. */
export interface Scan {
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

export function isZeroRefcount(scan: Scan, cluster: number): boolean {
  return (scan.zero[cluster >>> 3]! & (1 << (cluster & 7))) !== 0;
}

export function markZeroRefcount(scan: Scan, cluster: number): void {
  scan.zero[cluster >>> 3]! |= 1 << (cluster & 7);
}

/** Refuses unless [offset, offset+length) is a safe range inside the file. */
export function checkInFile(scan: Scan, offsetBytes: number, lengthBytes: number, what: string): void {
  const end = offsetBytes + lengthBytes;
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(end) || end > scan.fileSizeBytes) {
    refuse(`${what}: bytes ${offsetBytes}..${end} lie outside the ${scan.fileSizeBytes}-byte file`);
  }
}

/** Refuses unless a table starts at a cluster boundary after the header cluster and ends inside the file. */
export function checkTable(scan: Scan, offsetBytes: number, lengthBytes: number, what: string): void {
  checkInFile(scan, offsetBytes, lengthBytes, what);
  if (offsetBytes % scan.clusterSizeBytes !== 0) refuse(`${what}: offset ${offsetBytes} is not cluster-aligned`);
  if (offsetBytes < scan.clusterSizeBytes) refuse(`${what}: offset ${offsetBytes} overlaps the header`);
}

/**
 * The safety net: every cluster of [offset, offset+length), which `what` uses, must lie in the
 * file, after the header, and have refcount ≥ 1; otherwise the refcounts cannot be trusted.
 */
export function claim(scan: Scan, offsetBytes: number, lengthBytes: number, what: string): void {
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
export async function readBytes(scan: Scan, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
  const start = Math.floor(offsetBytes / SECTOR_BYTES) * SECTOR_BYTES;
  const end = Math.min(Math.ceil((offsetBytes + lengthBytes) / SECTOR_BYTES) * SECTOR_BYTES, scan.reader.sizeBytes);
  const bytes = await scan.reader.read(start, end - start);
  return bytes.subarray(offsetBytes - start, offsetBytes - start + lengthBytes);
}

/** Calls `visit` on consecutive pieces of [offset, offset+length), each at most READ_CHUNK_BYTES. */
export async function forEachChunk(
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
export async function forEachCluster(scan: Scan, offsets: readonly number[], visit: (bytes: Uint8Array, i: number) => void): Promise<void> {
  for (let i = 0; i < offsets.length; i += PARALLEL_READS) {
    const batch = offsets.slice(i, i + PARALLEL_READS).map((offset) => readBytes(scan, offset, scan.clusterSizeBytes));
    (await Promise.all(batch)).forEach((bytes, j) => visit(bytes, i + j));
  }
}

/** A 64-bit entry as its high and low 32-bit halves (exact; a double cannot hold 64 bits). */
export function halves(view: DataView, at: number): [hi: number, lo: number] {
  return [view.getUint32(at), view.getUint32(at + 4)];
}
