/**
 * The ext4-only parts of its metadata checksums (kernel Documentation/filesystems/ext4/
 * checksums.rst): crc16 for group descriptors under gdt_csum (uninit_bg). crc32c, for
 * everything under metadata_csum, is the shared one in binary/crc32.ts. Raw register updates,
 * like the kernel's crc16(): the caller passes the seed and no final inversion is applied.
 */
import { reflectedCrcTable } from '../../binary/crc32.js';

/** CRC-16 polynomial 0x8005 (lib/crc16.c), reflected. */
const CRC16_TABLE = reflectedCrcTable(0xa001);

/** Continues a crc16 over `data` from `crc` (start with 0xFFFF, as ext4_group_desc_csum does). */
export function crc16Update(crc: number, data: Uint8Array): number {
  let c = crc & 0xffff;
  for (let i = 0; i < data.length; i++) c = (c >>> 8) ^ CRC16_TABLE[(c ^ data[i]!) & 0xff]!;
  return c & 0xffff;
}

/** The 4 little-endian bytes of a group number, as the descriptor and bitmap checksums hash it. */
export function le32Bytes(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  return bytes;
}
