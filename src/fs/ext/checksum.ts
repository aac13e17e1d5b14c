/**
 * The two checksums of ext4 metadata (kernel Documentation/filesystems/ext4/checksums.rst):
 * crc16 for group descriptors under gdt_csum (uninit_bg), crc32c for everything under
 * metadata_csum. Both are raw register updates, like the kernel's crc16() and crc32c(): the
 * caller passes the seed (~0 to start) and no final inversion is applied.
 */

/** Table for a reflected (LSB-first) CRC with polynomial `poly` (already bit-reversed). */
function reflectedTable(poly: number): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (poly ^ (c >>> 1)) >>> 0 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

/** CRC-16 polynomial 0x8005 (lib/crc16.c), reflected. */
const CRC16_TABLE = reflectedTable(0xa001);
/** CRC-32C (Castagnoli) polynomial 0x1EDC6F41, reflected. */
const CRC32C_TABLE = reflectedTable(0x82f63b78);

/** Continues a crc16 over `data` from `crc` (start with 0xFFFF, as ext4_group_desc_csum does). */
export function crc16Update(crc: number, data: Uint8Array): number {
  let c = crc & 0xffff;
  for (let i = 0; i < data.length; i++) c = (c >>> 8) ^ CRC16_TABLE[(c ^ data[i]!) & 0xff]!;
  return c & 0xffff;
}

/** Continues a crc32c over `data` from `crc` (start with 0xFFFFFFFF, as ext4_chksum does). */
export function crc32cUpdate(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** The 4 little-endian bytes of a group number, as the descriptor and bitmap checksums hash it. */
export function le32Bytes(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  return bytes;
}
