import type { BlockDevice } from '../../src/disk/types.js';

/**
 * A BlockDevice over bytes in memory that cannot report extents (so nothing reads as known
 * zero) and records its write-zeroes calls: for the volume pass without a disk.
 */
export function memoryDevice(bytes: Uint8Array): BlockDevice & { readonly zeroed: Array<[number, number]> } {
  const zeroed: Array<[number, number]> = [];
  const check = (offsetBytes: number, lengthBytes: number) => {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > bytes.length) {
      throw new RangeError(`${offsetBytes}+${lengthBytes} outside ${bytes.length}`);
    }
  };
  return {
    sizeBytes: bytes.length,
    canExtents: false,
    zeroed,
    extents: () => Promise.resolve([]),
    read: (offsetBytes, lengthBytes) => {
      check(offsetBytes, lengthBytes);
      return Promise.resolve(bytes.slice(offsetBytes, offsetBytes + lengthBytes));
    },
    write: (offsetBytes, data) => {
      check(offsetBytes, data.length);
      bytes.set(data, offsetBytes);
      return Promise.resolve();
    },
    writeZeroes: (offsetBytes, lengthBytes) => {
      check(offsetBytes, lengthBytes);
      bytes.fill(0, offsetBytes, offsetBytes + lengthBytes);
      zeroed.push([offsetBytes, lengthBytes]);
      return Promise.resolve();
    },
    trim: () => Promise.resolve(),
    flush: () => Promise.resolve(),
  };
}
