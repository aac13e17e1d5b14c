import { open, stat, type FileHandle } from 'node:fs/promises';
import type { BlockSource, Extent } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { once } from '../util/async-stack.js';
import { pathError } from '../util/errno.js';

/** A source for the copier that is closed after the copy. */
export type CopySource = BlockSource & AsyncDisposable;

/** The input image as served, and where it lives. */
export interface CopyInput {
  readonly path: string;
  readonly format: string;
}

/**
 * The copier's source. A raw input read as it is (no overlay) is read straight from its file
 * with pread: the same bytes the NBD export serves, without the hop through
 * qemu-storage-daemon, which costs three more copies of every byte (its pread, the socket
 * send, our receive). Its zero extents still come from `device` (qemu's SEEK_DATA/SEEK_HOLE,
 * one block status round trip per GiB), which Node cannot ask the kernel for itself.
 * Anything else (another format, an overlay, a block device, a size that differs from the
 * export's) is read through `device`.
 */
export async function openCopySource(device: BlockSource, input: CopyInput | undefined): Promise<CopySource> {
  const passThrough: CopySource = {
    sizeBytes: device.sizeBytes,
    canExtents: device.canExtents,
    read: (offsetBytes, lengthBytes) => device.read(offsetBytes, lengthBytes),
    extents: (offsetBytes, lengthBytes) => device.extents(offsetBytes, lengthBytes),
    ...(device.readInto ? { readInto: (offsetBytes: number, dest: Uint8Array) => device.readInto!(offsetBytes, dest) } : {}),
    [Symbol.asyncDispose]: async () => {},
  };
  if (!input || input.format !== 'raw') return passThrough;
  const st = await stat(input.path).catch(() => undefined);
  if (!st?.isFile() || st.size !== device.sizeBytes) return passThrough;
  const fh = await open(input.path, 'r').catch((err: unknown) => {
    throw pathError(err, 'file', input.path);
  });
  return rawFileSource(fh, input.path, device);
}

function rawFileSource(fh: FileHandle, path: string, device: BlockSource): CopySource {
  const sizeBytes = device.sizeBytes;
  const readInto = async (offsetBytes: number, dest: Uint8Array): Promise<void> => {
    if (offsetBytes < 0 || offsetBytes + dest.byteLength > sizeBytes) {
      throw new RangeError(`read ${offsetBytes}+${dest.byteLength} is outside the ${sizeBytes}-byte ${path}`);
    }
    for (let done = 0; done < dest.byteLength; ) {
      const { bytesRead } = await fh.read(dest, done, dest.byteLength - done, offsetBytes + done);
      if (bytesRead === 0) {
        throw new SparsifyError('IN_USE', `${path} changed during the run (it became shorter); the output was not kept`, {
          hint: 'stop whatever writes to the input and run again',
        });
      }
      done += bytesRead;
    }
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
