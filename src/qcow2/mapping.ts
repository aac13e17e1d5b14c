/**
 * Reading a qcow2 image's guest data through its L1 and L2 tables (qemu docs/interop/qcow2.txt,
 * "Cluster mapping"), for an image simple enough to read without qemu: no backing file, no
 * encryption, no external data file, no extended L2 entries, closed cleanly. Pure decoders; no I/O.
 */
import { QCOW2_INCOMPAT, type Qcow2Extensions, type Qcow2Header } from '../qemu/qcow2-header.js';

/** "Cluster mapping": L1 and (standard) L2 entries are 64-bit. */
export const MAPPING_ENTRY_BYTES = 8;
const TWO_32 = 2 ** 32;

/** What one L2 entry says its guest cluster holds. */
export type ClusterKind =
  /** Reads as zeros: unallocated without a backing file, or the "all zeros" flag (bit 0, v3). */
  | 'zero'
  /** Stored uncompressed at `hostOffsetBytes`, a cluster boundary. */
  | 'data'
  /** Stored compressed, or an entry this reader does not interpret (reserved bits): qemu reads it. */
  | 'other';

/** One decoded L2 entry. */
export interface ClusterMapping {
  readonly kind: ClusterKind;
  /** Where a 'data' cluster starts in the file; 0 otherwise. */
  readonly hostOffsetBytes: number;
}

const ZERO: ClusterMapping = { kind: 'zero', hostOffsetBytes: 0 };
const OTHER: ClusterMapping = { kind: 'other', hostOffsetBytes: 0 };

/**
 * Why the image's data cannot be read through its tables here, or undefined when it can. What
 * this reader leaves to qemu: a backing file (unallocated clusters would read from it),
 * encryption, an external data file, extended L2 entries (subclusters), a dirty or corrupt
 * image, unknown incompatible features, and an L1 table too short for the virtual size.
 */
export function directReadRefusal(header: Qcow2Header, extensions: Qcow2Extensions, fileSizeBytes: number): string | undefined {
  if (header.backingFileOffsetBytes !== 0) return 'it has a backing file';
  if (header.cryptMethod !== 0 || extensions.cryptoHeader) return 'it is encrypted';
  if (extensions.externalDataFileName) return 'its data lives in an external data file';
  // compression_type only changes how compressed clusters read, and qemu reads those.
  const other = header.incompatibleFeatures & ~QCOW2_INCOMPAT.COMPRESSION_TYPE;
  if (other !== 0n) return `incompatible features 0x${other.toString(16)} (dirty, corrupt, extended L2 or others)`;
  if (header.l1Entries * l2CoverageBytes(header.clusterBits) < header.virtualSizeBytes) return 'its L1 table does not cover the disk';
  const l1End = header.l1TableOffsetBytes + header.l1Entries * MAPPING_ENTRY_BYTES;
  if (!Number.isSafeInteger(l1End) || l1End > fileSizeBytes) return 'its L1 table lies outside the file';
  return undefined;
}

/** Guest bytes one L2 table maps: a cluster of 8-byte entries. */
export function l2CoverageBytes(clusterBits: number): number {
  return 2 ** clusterBits * (2 ** clusterBits / MAPPING_ENTRY_BYTES);
}

/**
 * "L1 table entry": bits 9–55 give the L2 table's offset (0: none, the whole range unallocated).
 * Returns undefined for an entry with reserved bits set or an offset that is not a whole cluster
 * inside the file: qemu decides what such a range reads as.
 */
export function parseL1Entry(view: DataView, at: number, clusterSizeBytes: number, fileSizeBytes: number): number | undefined {
  const hi = view.getUint32(at);
  const lo = view.getUint32(at + 4);
  if (lo & 0x1ff || (hi >>> 24) & 0x7f) return undefined;
  const offsetBytes = (hi & 0xffffff) * TWO_32 + lo;
  if (offsetBytes === 0) return 0;
  return offsetBytes % clusterSizeBytes === 0 && offsetBytes + clusterSizeBytes <= fileSizeBytes ? offsetBytes : undefined;
}

/**
 * "Standard Cluster Descriptor" of an L2 entry: bit 62 marks a compressed cluster; otherwise
 * bit 0 is "all zeros" (version 3), bits 9–55 the host offset, and offset 0 without the flag is
 * unallocated (zeros, with no backing file). A data cluster must lie whole inside the file.
 */
export function parseL2Entry(view: DataView, at: number, header: Qcow2Header, fileSizeBytes: number): ClusterMapping {
  const hi = view.getUint32(at);
  const lo = view.getUint32(at + 4);
  if ((hi >>> 30) & 1) return OTHER;
  if (lo & 0x1fe || (hi >>> 24) & 0x3f) return OTHER;
  if (lo & 1) return header.version === 3 ? ZERO : OTHER;
  const hostOffsetBytes = (hi & 0xffffff) * TWO_32 + (lo - (lo & 0x1ff));
  if (hostOffsetBytes === 0) return ZERO;
  const cs = header.clusterSizeBytes;
  if (hostOffsetBytes % cs !== 0 || hostOffsetBytes + cs > fileSizeBytes) return OTHER;
  return { kind: 'data', hostOffsetBytes };
}
