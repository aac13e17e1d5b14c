import * as zlib from 'node:zlib';

/**
 * CRC-32 with the reflected IEEE 802.3 polynomial 0xEDB88320, as the UEFI spec (§5.3.2, GPT
 * header and entry-array CRCs) and LVM2's label checksum use it.
 */

const POLYNOMIAL = 0xedb88320;

const TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? POLYNOMIAL ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The raw CRC register update: no pre- or post-inversion (LVM2 uses it that way). */
export function crc32Update(state: number, data: Uint8Array): number {
  let c = state >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

// zlib.crc32 exists from Node 20.15 / 22.2; package.json allows 20.11, so keep the fallback.
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** The standard CRC-32 (init and final XOR 0xFFFFFFFF), as zlib and the UEFI spec compute it. */
export function crc32(data: Uint8Array): number {
  if (typeof nativeCrc32 === 'function') return nativeCrc32(data) >>> 0;
  return (crc32Update(0xffffffff, data) ^ 0xffffffff) >>> 0;
}
