/** The overlay cut to the shrunk disk's size: reads, writes and extents stop at the new end. */
import { describe, expect, it } from 'vitest';
import { prefixDevice } from '../../../src/shrink/prefix-device.js';
import { memoryDevice } from '../../helpers/mem-device.js';

describe('prefixDevice', () => {
  it('reads and writes inside the prefix, refuses past it, and clips extents to it', async () => {
    const bytes = new Uint8Array(4096).map((_, i) => i & 0xff);
    const d = prefixDevice(memoryDevice(bytes), 1024);
    expect(d.sizeBytes).toBe(1024);
    expect([...(await d.read(1020, 4))]).toEqual([252, 253, 254, 255]);
    await expect(d.read(1020, 8)).rejects.toThrow(RangeError);
    await expect(d.write(1024, new Uint8Array(1))).rejects.toThrow(RangeError);
    await d.write(0, new Uint8Array([9]));
    expect(bytes[0]).toBe(9);
    const extents = await d.extents(0, 1024);
    expect(extents.every((e) => e.offsetBytes + e.lengthBytes <= 1024)).toBe(true);
    expect(() => prefixDevice(memoryDevice(bytes), 8192)).toThrow(RangeError);
  });
});
