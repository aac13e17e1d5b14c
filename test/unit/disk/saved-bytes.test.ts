import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { restoreChangedBytes, saveBytes } from '../../../src/disk/saved-bytes.js';
import type { BlockDevice } from '../../../src/disk/types.js';

/** A device over bytes in memory that records its writes. */
function memoryDevice(bytes: Uint8Array): BlockDevice & { writes: [number, number][] } {
  const writes: [number, number][] = [];
  return {
    sizeBytes: bytes.length,
    canExtents: false,
    writes,
    read: (offset, length) => Promise.resolve(bytes.slice(offset, offset + length)),
    extents: () => Promise.resolve([]),
    write: (offset, data) => (writes.push([offset, data.length]), bytes.set(data, offset), Promise.resolve()),
    writeZeroes: (offset, length) => (bytes.fill(0, offset, offset + length), Promise.resolve()),
    trim: () => Promise.resolve(),
    flush: () => Promise.resolve(),
  };
}

describe('saveBytes and restoreChangedBytes', () => {
  it('write back exactly the saved ranges that changed, never their neighbours', async () => {
    const bytes = new Uint8Array(3 * 1024 * 1024).fill(7);
    const device = memoryDevice(bytes);
    const kept = ExtentSet.from([{ start: 512, end: 1024 }, { start: 4096, end: 4096 + 2.5 * 1024 * 1024 }]);
    const saved = await saveBytes(device, kept);
    bytes.fill(0);
    bytes.fill(7, 4096, 4096 + 1024 * 1024);
    const restored = await restoreChangedBytes(device, saved);
    // The first MiB piece of the second range did not change: it is not written.
    expect(device.writes).toEqual([[512, 512], [4096 + 1024 * 1024, 1024 * 1024], [4096 + 2 * 1024 * 1024, 512 * 1024]]);
    expect(restored.ranges).toEqual([{ start: 512, end: 1024 }, { start: 4096 + 1024 * 1024, end: 4096 + 2.5 * 1024 * 1024 }]);
    expect(bytes.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(bytes.subarray(1024, 4096).every((b) => b === 0)).toBe(true);
    expect(bytes.subarray(512, 1024).every((b) => b === 7)).toBe(true);
    expect(bytes.subarray(4096, 4096 + 2.5 * 1024 * 1024).every((b) => b === 7)).toBe(true);
  });

  it('write nothing when nothing changed', async () => {
    const device = memoryDevice(new Uint8Array(8192).fill(1));
    const restored = await restoreChangedBytes(device, await saveBytes(device, ExtentSet.of(0, 8192)));
    expect(restored.isEmpty).toBe(true);
    expect(device.writes).toEqual([]);
  });
});
