/**
 * What the parts of the NTFS reader share: the fixed MFT record numbers and attribute types
 * (Linux-NTFS project, "NTFS Documentation", sections "Files" and "Attributes"; ntfs-3g
 * layout.h), where a structure lies for error messages, and the two ways a read stops short of
 * a map:
 *
 * - a structure that does not decode (bad signature, a length running out of its record, a
 *   broken run list) is damage: SparsifyError BAD_IMAGE naming the structure and the byte;
 * - a volume that decodes but whose state forbids trusting its bitmap (dirty, hibernated, a log
 *   to replay, an inconsistency between structures) is `{trusted: false, reason}`; inside the
 *   reader that is the NtfsUntrusted exception, caught once in readNtfsFreeMap.
 */
import { SparsifyError } from '../../errors.js';

/** System files at fixed MFT record numbers ("Files": $MFT, $LogFile, $Volume, root, $Bitmap). */
export const MFT_RECORD = {
  mft: 0,
  logFile: 2,
  volume: 3,
  root: 5,
  bitmap: 6,
} as const;

/** Attribute type codes ("Attributes"; layout.h ATTR_TYPES). */
export const ATTR_TYPE = {
  attributeList: 0x20,
  fileName: 0x30,
  volumeInformation: 0x70,
  data: 0x80,
  indexRoot: 0x90,
  indexAllocation: 0xa0,
  end: 0xffffffff,
} as const;

/** Attribute flags (layout.h ATTR_FLAGS): data that is not stored cluster for cluster. */
export const ATTR_FLAG = {
  compressionMask: 0x00ff,
  encrypted: 0x4000,
  sparse: 0x8000,
} as const;

/** Multi-sector transfer protection works in 512-byte strides whatever the sector size (NTFS_BLOCK_SIZE). */
export const NTFS_BLOCK_BYTES = 512;

/** A structure's name and the volume byte offset it starts at, for error messages. */
export interface Where {
  readonly what: string;
  readonly offsetBytes: number;
}

const DAMAGE_HINT = "the NTFS metadata is damaged: run 'chkdsk /f' on it in Windows, or leave the volume out with --ignore";

/** Throws BAD_IMAGE: "ntfs MFT record 6 at byte N: <what>" (N = the structure's offset + `at`). */
export function badNtfs(where: Where, at: number, what: string): never {
  throw new SparsifyError('BAD_IMAGE', `ntfs ${where.what} at byte ${where.offsetBytes + at}: ${what}`, {
    hint: DAMAGE_HINT,
  });
}

/** The volume decodes but its bitmap must not be used; `message` is the reason for the report. */
export class NtfsUntrusted extends Error {
  override readonly name = 'NtfsUntrusted';
}

/** Stops the read with a reason the report shows (see NtfsUntrusted). */
export function untrusted(reason: string): never {
  throw new NtfsUntrusted(reason);
}

/** A little-endian signed 64-bit field as a number, or undefined when it does not fit a safe integer. */
export function s64le(view: DataView, offset: number): number | undefined {
  const value = view.getBigInt64(offset, true);
  return value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER) ? undefined : Number(value);
}

/** An MFT reference: 48-bit record number and 16-bit sequence number (layout.h MFT_REF). */
export interface MftReference {
  readonly record: number;
  readonly sequence: number;
}

/** Decodes the 8-byte MFT reference at `offset`. */
export function mftReference(view: DataView, offset: number): MftReference {
  const low = view.getUint32(offset, true);
  const high = view.getUint16(offset + 4, true);
  return { record: high * 2 ** 32 + low, sequence: view.getUint16(offset + 6, true) };
}
