import type { BlockReader } from '../../src/disk/types.js';

/**
 * A BlockReader over bytes in memory, as long as `sizeBytes` (bytes past the buffer read as
 * zero), that rejects any read outside it with a RangeError, as the real readers do; it counts
 * its reads, so a decoder that loops or reads too much shows up.
 */
export function memoryReader(bytes: Uint8Array, sizeBytes = bytes.length): BlockReader & { readonly reads: number } {
  let reads = 0;
  return {
    sizeBytes,
    get reads() {
      return reads;
    },
    read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
      reads++;
      const inside = Number.isSafeInteger(offsetBytes) && Number.isSafeInteger(lengthBytes) && offsetBytes >= 0 && lengthBytes >= 0;
      if (!inside || offsetBytes + lengthBytes > sizeBytes) {
        return Promise.reject(new RangeError(`read ${offsetBytes}+${lengthBytes} outside ${sizeBytes}`));
      }
      const out = new Uint8Array(lengthBytes);
      if (offsetBytes < bytes.length) out.set(bytes.subarray(offsetBytes, Math.min(offsetBytes + lengthBytes, bytes.length)));
      return Promise.resolve(out);
    },
  };
}
