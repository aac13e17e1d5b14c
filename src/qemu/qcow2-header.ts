/**
 * The qcow2 header and the header extensions that matter for cluster accounting (qemu
 * docs/interop/qcow2.txt, "Header" and "Header extensions"), and whether the header alone forbids
 * trusting the refcounts.
 */
import { SparsifyError } from '../errors.js';
import { u64be, viewOf } from '../binary/bytes.js';

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

/** qemu's limit on internal snapshots ("Snapshots"). */
const MAX_SNAPSHOTS = 65536;

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

export function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Why the header alone forbids trusting the refcounts, or undefined. */
export function headerRefusal(header: Qcow2Header, extensions: Qcow2Extensions): string | undefined {
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

/** The fixed header always fits in the smallest cluster. */
export const HEADER_PROBE_BYTES = 2 ** MIN_CLUSTER_BITS;
