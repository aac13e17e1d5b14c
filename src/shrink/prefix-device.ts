/**
 * The first bytes of a device as a device of their own: after a shrink the overlay is still as
 * large as the input, but the disk that the rest of the run examines and copies ends at the new
 * size (the GPT backup is in its last block).
 */
import type { BlockDevice, Extent } from '../disk/types.js';

/** `device` cut to its first `sizeBytes`; every access past them is a RangeError. */
export function prefixDevice(device: BlockDevice, sizeBytes: number): BlockDevice {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > device.sizeBytes) {
    throw new RangeError(`a ${sizeBytes}-byte prefix of a ${device.sizeBytes}-byte device`);
  }
  const inside = (offsetBytes: number, lengthBytes: number): void => {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > sizeBytes) {
      throw new RangeError(`${offsetBytes}+${lengthBytes} is past the end of the ${sizeBytes}-byte disk`);
    }
  };
  const clip = (extents: Extent[]): Extent[] =>
    extents
      .filter((e) => e.offsetBytes < sizeBytes)
      .map((e) => (e.offsetBytes + e.lengthBytes > sizeBytes ? { ...e, lengthBytes: sizeBytes - e.offsetBytes } : e));
  return {
    sizeBytes,
    canExtents: device.canExtents,
    read: async (o, l) => (inside(o, l), device.read(o, l)),
    extents: async (o, l) => (inside(o, l), clip(await device.extents(o, l))),
    ...(device.readInto ? { readInto: async (o: number, dest: Uint8Array) => (inside(o, dest.byteLength), device.readInto!(o, dest)) } : {}),
    write: async (o, data) => (inside(o, data.byteLength), device.write(o, data)),
    writeZeroes: async (o, l, punch) => (inside(o, l), device.writeZeroes(o, l, punch)),
    trim: async (o, l) => (inside(o, l), device.trim(o, l)),
    flush: () => device.flush(),
  };
}
