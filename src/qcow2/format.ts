/**
 * The pieces of a qcow2 v3 image that the compressed writer produces (qemu docs/interop/qcow2.txt):
 * the header, L1 and L2 entries, compressed cluster descriptors and 16-bit refcount blocks.
 * Pure encoders over `Uint8Array`/`DataView`; no I/O.
 */
import { QCOW2_INCOMPAT } from '../qemu/qcow2-header.js';

/** "Header": magic "QFI\xfb". */
const MAGIC = 0x514649fb;
const VERSION = 3;
/** "Header": bytes 0–103 plus compression_type (byte 104) padded to a multiple of 8. */
export const HEADER_LENGTH_BYTES = 112;
/** "Header extensions": type 0 ends the list. */
const EXT_END_BYTES = 8;
/** refcount_order 4: 16-bit refcounts, qemu's default. */
export const REFCOUNT_ORDER = 4;
export const REFCOUNT_BYTES = 2;
/** The largest refcount a 16-bit entry holds. */
export const MAX_REFCOUNT = 0xffff;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;

/** "Cluster mapping": L1/L2 entry bit 63, the cluster's refcount is exactly one. */
const OFLAG_COPIED = 1n << 63n;
/** "Cluster mapping": L2 entry bit 62, the cluster is compressed. */
const OFLAG_COMPRESSED = 1n << 62n;
/** A compressed cluster's data is counted in 512-byte sectors. */
export const SECTOR_BYTES = 512;

/** "Header", byte 104: compression_type. */
export type CompressionType = 'zlib' | 'zstd';
const COMPRESSION_TYPE_CODE: Record<CompressionType, number> = { zlib: 0, zstd: 1 };

/** What the header records. */
export interface HeaderFields {
  readonly clusterBits: number;
  readonly virtualSizeBytes: number;
  readonly l1Entries: number;
  readonly l1TableOffsetBytes: number;
  readonly refcountTableOffsetBytes: number;
  readonly refcountTableClusters: number;
  readonly compressionType: CompressionType;
}

/** Encodes the header and an empty extension list ("Header", "Header extensions"). */
export function encodeHeader(h: HeaderFields): Uint8Array {
  const bytes = new Uint8Array(HEADER_LENGTH_BYTES + EXT_END_BYTES);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, MAGIC);
  v.setUint32(4, VERSION);
  // 8–19: no backing file.
  v.setUint32(20, h.clusterBits);
  v.setBigUint64(24, BigInt(h.virtualSizeBytes));
  // 32: crypt_method 0.
  v.setUint32(36, h.l1Entries);
  v.setBigUint64(40, BigInt(h.l1TableOffsetBytes));
  v.setBigUint64(48, BigInt(h.refcountTableOffsetBytes));
  v.setUint32(56, h.refcountTableClusters);
  // 60–71: no snapshots.
  // zstd must be announced as incompatible: a reader that ignores compression_type would misread it.
  v.setBigUint64(72, h.compressionType === 'zlib' ? 0n : QCOW2_INCOMPAT.COMPRESSION_TYPE);
  // 80–95: no compatible or autoclear features.
  v.setUint32(96, REFCOUNT_ORDER);
  v.setUint32(100, HEADER_LENGTH_BYTES);
  v.setUint8(104, COMPRESSION_TYPE_CODE[h.compressionType]);
  return bytes;
}

/** Guest bytes one L2 table maps: a cluster of 8-byte entries. */
export function l2CoverageBytes(clusterBits: number): number {
  return 2 ** clusterBits * (2 ** clusterBits / 8);
}

/** L1 entries needed for `virtualSizeBytes` ("Header", l1_size). */
export function l1EntriesFor(virtualSizeBytes: number, clusterBits: number): number {
  return Math.ceil(virtualSizeBytes / l2CoverageBytes(clusterBits));
}

/** An L1 entry for an L2 table at `offsetBytes`, which nothing else references. */
export function l1Entry(offsetBytes: number): bigint {
  return BigInt(offsetBytes) | OFLAG_COPIED;
}

/** A standard L2 entry for an uncompressed cluster at `offsetBytes`, referenced once. */
export function standardL2Entry(offsetBytes: number): bigint {
  return BigInt(offsetBytes) | OFLAG_COPIED;
}

/**
 * "Compressed Clusters Descriptor": bits 0..x-1 the host offset of the data, bits x..61 the number
 * of 512-byte sectors it uses beyond the one holding the offset, x = 62 - (cluster_bits - 8).
 */
export function compressedL2Entry(offsetBytes: number, lengthBytes: number, clusterBits: number): bigint {
  const x = BigInt(62 - (clusterBits - 8));
  const extraSectors = Math.floor((offsetBytes + lengthBytes - 1) / SECTOR_BYTES) - Math.floor(offsetBytes / SECTOR_BYTES);
  if (offsetBytes >= 2 ** Number(x) || extraSectors >= 2 ** (clusterBits - 8)) {
    throw new RangeError(`compressed cluster ${offsetBytes}+${lengthBytes} does not fit a descriptor`);
  }
  return OFLAG_COMPRESSED | (BigInt(extraSectors) << x) | BigInt(offsetBytes);
}

/** Refcount entries in one refcount block. */
export function refcountsPerBlock(clusterBits: number): number {
  return 2 ** clusterBits / REFCOUNT_BYTES;
}
