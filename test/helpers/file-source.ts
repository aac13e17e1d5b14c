import { open, type FileHandle } from 'node:fs/promises';
import type { BlockSource, Extent } from '../../src/disk/types.js';
import { SparsifyError } from '../../src/errors.js';
import { once } from '../../src/util/async-stack.js';

/** A raw file read by offset; it cannot tell zero extents (for tests). */
export interface FileSource extends BlockSource, AsyncDisposable {
  readonly path: string;
}

/** Opens `path` read-only as a BlockSource of its current size. */
export async function openFileSource(path: string): Promise<FileSource> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    return makeFileSource(path, fh, size);
  } catch (err) {
    await fh.close();
    throw err;
  }
}

function makeFileSource(path: string, fh: FileHandle, sizeBytes: number): FileSource {
  return {
    path,
    sizeBytes,
    canExtents: false,
    read: (offsetBytes, lengthBytes) => readExact(fh, path, sizeBytes, offsetBytes, lengthBytes),
    extents: (): Promise<Extent[]> => Promise.resolve([]),
    [Symbol.asyncDispose]: once(() => fh.close()),
  };
}

/** Reads exactly `lengthBytes` at `offsetBytes`, looping over short reads; EOF is an error. */
async function readExact(
  fh: FileHandle,
  path: string,
  sizeBytes: number,
  offsetBytes: number,
  lengthBytes: number,
): Promise<Buffer> {
  if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > sizeBytes) {
    throw new RangeError(`read ${offsetBytes}+${lengthBytes} is outside the ${sizeBytes}-byte ${path}`);
  }
  const buf = Buffer.allocUnsafe(lengthBytes);
  for (let done = 0; done < lengthBytes; ) {
    const { bytesRead } = await fh.read(buf, done, lengthBytes - done, offsetBytes + done);
    if (bytesRead === 0) {
      throw new SparsifyError('BAD_IMAGE', `${path}: unexpected end of file at byte ${offsetBytes + done}`);
    }
    done += bytesRead;
  }
  return buf;
}
