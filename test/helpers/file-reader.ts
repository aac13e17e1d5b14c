import { open, readFile, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { SparsifyError } from '../../src/errors.js';
import { errnoOf } from '../../src/util/errno.js';
import type { BlockReader } from '../../src/disk/types.js';

/** A {@link BlockReader} over a file or block device, read with positional reads; dispose to close it. */
export interface FileReader extends BlockReader, AsyncDisposable {
  readonly path: string;
}

/** Opens a raw image or block device read-only as a {@link FileReader}; NOT_FOUND when it does not exist. */
export async function openFileReader(path: string): Promise<FileReader> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw openError(path, err);
  }
  try {
    return new HandleReader(path, handle, await sizeOf(path, await handle.stat()));
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** /sys/dev/block/M:N/size counts 512-byte sectors whatever the device's sector size. */
const SYSFS_SECTOR_BYTES = 512;

class HandleReader implements FileReader {
  #handle: FileHandle | undefined;
  #closing: Promise<void> | undefined;

  constructor(
    readonly path: string,
    handle: FileHandle,
    readonly sizeBytes: number,
  ) {
    this.#handle = handle;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    const handle = this.#handle;
    if (!handle) throw new Error(`read from ${this.path} after it was closed`);
    if (!validRange(offsetBytes, lengthBytes, this.sizeBytes)) {
      throw new RangeError(
        `read ${offsetBytes}+${lengthBytes} is outside the ${this.sizeBytes}-byte file ${this.path}`,
      );
    }
    const buffer = new Uint8Array(lengthBytes);
    let done = 0;
    // A positional read may return fewer bytes than asked (large reads); 0 means end of file.
    while (done < lengthBytes) {
      const { bytesRead } = await handle.read(buffer, done, lengthBytes - done, offsetBytes + done);
      if (bytesRead === 0) {
        throw new SparsifyError(
          'BAD_IMAGE',
          `short read from ${this.path} at offset ${offsetBytes}: got ${done} of ${lengthBytes} bytes`,
          { hint: 'the file shrank while sparsify was reading it; is another program writing to it?' },
        );
      }
      done += bytesRead;
    }
    return buffer;
  }

  [Symbol.asyncDispose](): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    this.#closing ??= handle ? handle.close() : Promise.resolve();
    return this.#closing;
  }
}

/** A regular file's length, or a block device's from sysfs (fstat says 0 for devices). */
async function sizeOf(path: string, stats: Stats): Promise<number> {
  if (stats.isFile()) return stats.size;
  if (stats.isBlockDevice()) {
    // Linux dev_t: major in bits 8–19 (and 32+), minor in bits 0–7 and 20–31.
    const major = (stats.rdev >> 8) & 0xfff;
    const minor = (stats.rdev & 0xff) | ((stats.rdev >> 12) & 0xfff00);
    const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    return Number(sectors.trim()) * SYSFS_SECTOR_BYTES;
  }
  throw new SparsifyError('UNSUPPORTED', `${path} is neither a regular file nor a block device`, {
    hint: 'give a disk image file',
  });
}

function validRange(offsetBytes: number, lengthBytes: number, sizeBytes: number): boolean {
  return (
    Number.isSafeInteger(offsetBytes) &&
    Number.isSafeInteger(lengthBytes) &&
    offsetBytes >= 0 &&
    lengthBytes >= 0 &&
    offsetBytes + lengthBytes <= sizeBytes
  );
}

function openError(path: string, err: unknown): SparsifyError {
  if (errnoOf(err) === 'ENOENT') {
    return new SparsifyError('NOT_FOUND', `${path}: no such file`, { cause: err, hint: 'check the input path' });
  }
  return new SparsifyError('BAD_IMAGE', `cannot open ${path}: ${(err as Error).message}`, { cause: err });
}
