import { constants } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { BlockSink } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { once } from '../util/async-stack.js';
import { errnoOf, pathError } from '../util/errno.js';
import { pwriteFully } from '../util/file-writes.js';
import { fsyncDir } from '../util/fsync.js';
import { openFileWriteback } from './write-behind.js';

/** Bytes of zeros written per request by `writeZeroes` (a device's zero runs, or the fallback). */
const ZERO_WRITE_BYTES = 1024 * 1024;

/** A new sparse raw file as a copy destination; dispose closes it, `remove` deletes it. */
export interface RawFileSink extends BlockSink, AsyncDisposable {
  readonly path: string;
  /** Closes and deletes the file: for a failed copy, which must leave no partial output. */
  remove(): Promise<void>;
}

/**
 * Creates `path` as a file of `sizeBytes` that is all holes (so it reads as zero and the copier
 * never writes zeros into it). Refuses an existing file unless `overwrite`, which truncates it.
 */
export async function openRawFileSink(
  path: string,
  sizeBytes: number,
  options: { overwrite: boolean },
): Promise<RawFileSink> {
  const fh = await createFile(path, options.overwrite);
  try {
    await fh.truncate(sizeBytes);
  } catch (err) {
    await fh.close();
    await rm(path, { force: true });
    throw ioError(path, err);
  }
  return makeRawFileSink(path, fh, sizeBytes, { zeroInitialized: true });
}

/**
 * An existing block device as a raw destination: opened exclusively (refused while mounted or
 * held), written from offset 0 up to `sizeBytes`, never truncated or renamed. A device is not
 * zero-initialised, so the copier writes the zero runs too; flush is an fsync of the device.
 */
export async function openRawDeviceSink(path: string, sizeBytes: number): Promise<RawFileSink> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_EXCL);
  } catch (err) {
    throw ioError(path, err);
  }
  return makeRawFileSink(path, fh, sizeBytes, { zeroInitialized: false });
}

async function createFile(path: string, overwrite: boolean): Promise<FileHandle> {
  try {
    return await open(path, overwrite ? 'w' : 'wx');
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') {
      throw new SparsifyError('OUTPUT_EXISTS', `output file ${path} already exists`, {
        cause: err,
        hint: 'remove it or choose another output file',
      });
    }
    throw ioError(path, err);
  }
}

function makeRawFileSink(path: string, fh: FileHandle, sizeBytes: number, kind: { zeroInitialized: boolean }): RawFileSink {
  // A new file's name must be made durable too; a device has no new name.
  let syncedDir = !kind.zeroInitialized;
  // The disk writes while the copy goes on, and written pages leave the cache (src/copy/write-behind.ts).
  const writeback = openFileWriteback(fh, (err) => ioError(path, err));
  const close = once(async () => {
    await writeback.settle().catch(() => {});
    await fh.close();
  });
  // One write at a time, in the order asked. ext4 takes the inode lock for each buffered write,
  // so parallel writes to one file only spun on it (rwsem_spin_on_owner in perf), and a small
  // write made synchronously on the event loop (src/util/file-writes.ts) waited behind up to a
  // dozen 2 MiB ones, stalling every read meanwhile (writeSync: 318 ms of the main thread's
  // profile before, none in its top items after). Reads still run in parallel.
  let tail: Promise<void> = Promise.resolve();
  // Each write waits for its writeback's room before the next one starts.
  const counted = async (start: () => Promise<void>, offsetBytes: number, bytes: number): Promise<void> => {
    const done = tail.then(start).then(() => writeback.wrote(offsetBytes, bytes));
    tail = done.catch(() => {});
    await done;
  };
  return {
    path,
    sizeBytes,
    zeroInitialized: kind.zeroInitialized,
    writeAlignmentBytes: 1,
    write: (offsetBytes, data) => counted(() => writeAll(fh, path, sizeBytes, offsetBytes, data), offsetBytes, data.length),
    writeZeroes: (offsetBytes, lengthBytes) => counted(() => writeZeroBytes(fh, path, sizeBytes, offsetBytes, lengthBytes), offsetBytes, lengthBytes),
    async flush() {
      await writeback.settle();
      try {
        await fh.sync();
      } catch (err) {
        throw ioError(path, err);
      }
      if (!syncedDir) await fsyncDir(dirname(path)); // the new file's name too (invariant 6)
      syncedDir = true;
    },
    async remove() {
      await close();
      await rm(path, { force: true });
    },
    [Symbol.asyncDispose]: close,
  };
}

async function writeAll(fh: FileHandle, path: string, sizeBytes: number, offsetBytes: number, data: Uint8Array) {
  checkRange(path, sizeBytes, offsetBytes, data.length);
  try {
    await pwriteFully(fh, data, offsetBytes);
  } catch (err) {
    throw ioError(path, err);
  }
}

/**
 * Writes real zeros in bounded buffers. Node has no fallocate(PUNCH_HOLE) nor BLKZEROOUT, so
 * `punch` cannot be honoured; the copier calls this only on a block device (not zero-initialised),
 * where plain zero writes are what is known to leave zeros (a discard may not).
 */
async function writeZeroBytes(fh: FileHandle, path: string, sizeBytes: number, offsetBytes: number, lengthBytes: number) {
  checkRange(path, sizeBytes, offsetBytes, lengthBytes);
  const zeros = Buffer.alloc(Math.min(lengthBytes, ZERO_WRITE_BYTES));
  for (let done = 0; done < lengthBytes; done += zeros.length) {
    const n = Math.min(zeros.length, lengthBytes - done);
    await writeAll(fh, path, sizeBytes, offsetBytes + done, zeros.subarray(0, n));
  }
}

function checkRange(path: string, sizeBytes: number, offsetBytes: number, lengthBytes: number): void {
  if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > sizeBytes) {
    throw new RangeError(`write ${offsetBytes}+${lengthBytes} is outside the ${sizeBytes}-byte ${path}`);
  }
}

/** The one-line error for a failed write to the output (NO_SPACE for a full filesystem). */
function ioError(path: string, err: unknown): unknown {
  return pathError(err, 'output', path);
}
