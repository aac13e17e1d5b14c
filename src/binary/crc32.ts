import * as zlib from 'node:zlib';

/**
 * The two 32-bit CRCs on disk, both reflected (LSB-first), as raw register updates plus the
 * standard form (init and final XOR 0xFFFFFFFF):
 * - CRC-32, polynomial 0xEDB88320 (IEEE 802.3): the UEFI spec (§5.3.2, GPT header and
 *   entry-array CRCs) and LVM2's label checksum;
 * - CRC-32C, polynomial 0x82F63B78 (Castagnoli): ext4 metadata_csum (ext4_chksum) and every
 *   XFS v5 checksum (xfs_cksum.h).
 */

/** The byte table of a reflected CRC with polynomial `poly` (already bit-reversed). */
export function reflectedCrcTable(poly: number): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (poly ^ (c >>> 1)) >>> 0 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

function update(table: Uint32Array, state: number, data: Uint8Array): number {
  let c = state >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

const CRC32_TABLE = reflectedCrcTable(0xedb88320);
const CRC32C_TABLE = reflectedCrcTable(0x82f63b78);

/** The raw CRC-32 register update: no pre- or post-inversion (LVM2 uses it that way). */
export function crc32Update(state: number, data: Uint8Array): number {
  return update(CRC32_TABLE, state, data);
}

// zlib.crc32 exists from Node 20.15 / 22.2; package.json allows 20.11, so keep the fallback.
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** The standard CRC-32 (init and final XOR 0xFFFFFFFF), as zlib and the UEFI spec compute it. */
export function crc32(data: Uint8Array): number {
  if (typeof nativeCrc32 === 'function') return nativeCrc32(data) >>> 0;
  return (crc32Update(0xffffffff, data) ^ 0xffffffff) >>> 0;
}

/**
 * The raw CRC-32C register update, like the kernel's crc32c(): the caller passes the seed
 * (0xFFFFFFFF to start, or ext4's per-filesystem seed) and no final inversion is applied.
 */
export function crc32cUpdate(state: number, data: Uint8Array): number {
  return update(CRC32C_TABLE, state, data);
}

/** The standard CRC-32C of `data` (init and final XOR 0xFFFFFFFF). */
export function crc32c(data: Uint8Array): number {
  return (crc32cUpdate(0xffffffff, data) ^ 0xffffffff) >>> 0;
}
