import * as zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32, crc32c, crc32cUpdate, crc32Update } from '../../../src/binary/crc32.js';
import { crc32cBitwise } from '../fs/xfs/fixtures.js';

const check = new TextEncoder().encode('123456789');
const bytes = (length: number, at: (i: number) => number): Uint8Array => Uint8Array.from({ length }, (_, i) => at(i));

describe('crc32', () => {
  it('gives the IEEE check value and agrees with the table-driven fallback', () => {
    expect(crc32(check)).toBe(0xcbf43926);
    expect((crc32Update(0xffffffff, check) ^ 0xffffffff) >>> 0).toBe(0xcbf43926);
    const random = new Uint8Array(4096).map((_, i) => (i * 7919) & 0xff);
    expect((crc32Update(0xffffffff, random) ^ 0xffffffff) >>> 0).toBe(zlib.crc32(random) >>> 0);
  });
});

describe('crc32c', () => {
  it('gives the CRC-32C check value and the iSCSI test vectors (RFC 3720, B.4)', () => {
    expect(crc32c(check)).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(bytes(32, (i) => i))).toBe(0x46dd794e);
    expect(crc32c(bytes(32, (i) => 31 - i))).toBe(0x113fdb5c);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('agrees with a bitwise implementation, and raw updates chain as one', () => {
    const data = bytes(4099, (i) => (i * 131 + 7) & 0xff);
    expect(crc32c(data)).toBe(crc32cBitwise(data));
    const chained = crc32cUpdate(crc32cUpdate(0xffffffff, data.subarray(0, 1000)), data.subarray(1000));
    expect((chained ^ 0xffffffff) >>> 0).toBe(crc32c(data));
  });
});
