/**
 * What the XFS decoders share: the damage error, the CRC32c checksum rule, and the basic-block unit.
 *
 * Sources for every XFS file here: "XFS Algorithms & Data Structures" (3rd ed.), and the on-disk
 * definitions in xfsprogs' libxfs/xfs_format.h and libxfs/xfs_log_format.h. All XFS metadata is
 * big-endian except the CRC fields, which are stored little-endian (`__le32`).
 */
import { crc32cUpdate } from '../../binary/crc32.js';
import { SparsifyError } from '../../errors.js';

/** BBSIZE: the 512-byte "basic block" in which XFS counts disk addresses and log blocks. */
export const BB_BYTES = 512;
/** NULLAGBLOCK: an AG block pointer that points nowhere (sibling of the first/last block). */
export const NULL_AGBLOCK = 0xffffffff;

/**
 * A damaged or inconsistent XFS structure found by a decoder: BAD_IMAGE naming the structure and
 * where it is ("xfs AG 3 bnobt block 17: bad magic"). readXfsFreeMap turns it into an untrusted
 * map (the volume is then copied as is); it never leaves a map built from garbage.
 */
export class XfsDamage extends SparsifyError {
  constructor(where: string, what: string) {
    super('BAD_IMAGE', `xfs ${where}: ${what}`, { hint: "check the filesystem with 'xfs_repair -n'" });
  }
}

/** Throws {@link XfsDamage}. */
export function damage(where: string, what: string): never {
  throw new XfsDamage(where, what);
}

const CRC_FIELD_BYTES = 4;
const ZERO_CRC_FIELD = new Uint8Array(CRC_FIELD_BYTES);

/**
 * The XFS checksum of `bytes` with its 4-byte CRC field at `crcOffset` taken as zero
 * (xfs_start_cksum_safe / xfs_end_cksum), as the number stored little-endian in that field.
 * xfs_cksum.h seeds with ~0 and stores the inverted register: the standard CRC-32C.
 */
function xfsChecksum(bytes: Uint8Array, crcOffset: number): number {
  let state = crc32cUpdate(0xffffffff, bytes.subarray(0, crcOffset));
  state = crc32cUpdate(state, ZERO_CRC_FIELD);
  state = crc32cUpdate(state, bytes.subarray(crcOffset + CRC_FIELD_BYTES));
  return (state ^ 0xffffffff) >>> 0;
}

/** Whether the little-endian CRC stored at `crcOffset` matches the checksum of `bytes`. */
export function crcMatches(bytes: Uint8Array, crcOffset: number): boolean {
  if (crcOffset < 0 || crcOffset + CRC_FIELD_BYTES > bytes.length) return false;
  const stored = new DataView(bytes.buffer, bytes.byteOffset + crcOffset, CRC_FIELD_BYTES).getUint32(0, true);
  return stored === xfsChecksum(bytes, crcOffset);
}

/** Whether two 16-byte UUID fields are equal. */
export function sameUuid(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
