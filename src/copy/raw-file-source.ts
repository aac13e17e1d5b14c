import type { FileHandle } from 'node:fs/promises';
import type { BlockSource, Extent } from '../disk/types.js';
import { once } from '../util/async-stack.js';
import type { CopySource } from './copy-source.js';
import { preadFully } from './file-reads.js';

/**
 * A raw input read straight from its file with pread: the same bytes the NBD export serves,
 * without the hop through qemu-storage-daemon, which costs three more copies of every byte (its
 * pread, the socket send, our receive). Its zero extents still come from `device` (qemu's
 * SEEK_DATA/SEEK_HOLE, one block status round trip per GiB), which Node cannot ask the kernel
 * for itself. Closing the source closes `fh`.
 */
export function rawFileSource(fh: FileHandle, path: string, device: BlockSource): CopySource {
  const sizeBytes = device.sizeBytes;
  const readInto = async (offsetBytes: number, dest: Uint8Array): Promise<void> => {
    if (offsetBytes < 0 || offsetBytes + dest.byteLength > sizeBytes) {
      throw new RangeError(`read ${offsetBytes}+${dest.byteLength} is outside the ${sizeBytes}-byte ${path}`);
    }
    await preadFully(fh, path, dest, offsetBytes);
  };
  return {
    sizeBytes,
    canExtents: device.canExtents,
    extents: (offsetBytes: number, lengthBytes: number): Promise<Extent[]> => device.extents(offsetBytes, lengthBytes),
    readInto,
    async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
      const dest = Buffer.allocUnsafe(lengthBytes);
      await readInto(offsetBytes, dest);
      return dest;
    },
    [Symbol.asyncDispose]: once(() => fh.close()),
  };
}
