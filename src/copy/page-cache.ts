/**
 * The page-cache calls Node lacks, from the C library through koffi (main thread only: koffi has
 * crashed while loading in worker threads, see src/qcow2/compress-zlib.js): sync_file_range to
 * start and wait for the writeback of a range of a file, posix_fadvise(DONTNEED) to drop its clean
 * pages. Calls run on libuv's pool (koffi's async calls), never blocking the event loop. Loaded
 * lazily, once; undefined where koffi or libc cannot be loaded, and the caller keeps its fallback.
 */
import { createRequire } from 'node:module';

/** Range calls on one open file. */
export interface PageCacheOps {
  /** Starts the writeback of the dirty pages of [offsetBytes, +lengthBytes); does not wait for it. */
  startWriteback(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Waits until the range is written back (starting what is not yet), then drops its pages from the cache. */
  writeBackAndDrop(offsetBytes: number, lengthBytes: number): Promise<void>;
}

// <linux/fs.h> and <fcntl.h>
const SYNC_FILE_RANGE_WAIT_BEFORE = 1;
const SYNC_FILE_RANGE_WRITE = 2;
const SYNC_FILE_RANGE_WAIT_AFTER = 4;
const POSIX_FADV_DONTNEED = 4;

type AsyncCall = { async: (...args: unknown[]) => void };
interface Libc {
  readonly syncFileRange: AsyncCall;
  readonly fadvise: AsyncCall;
}

let libc: Libc | null | undefined;

function loadLibc(): Libc | undefined {
  if (libc === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const koffi: any = createRequire(import.meta.url)('koffi');
      const lib = koffi.load('libc.so.6');
      libc = {
        syncFileRange: lib.func('int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)'),
        fadvise: lib.func('int posix_fadvise(int fd, int64_t offset, int64_t len, int advice)'),
      };
    } catch {
      libc = null;
    }
  }
  return libc ?? undefined;
}

/** The calls on descriptor `fd`, or undefined where they cannot be made here. */
export function pageCacheOps(fd: number): PageCacheOps | undefined {
  const c = loadLibc();
  if (!c) return undefined;
  const call = (fn: AsyncCall, what: string, ...args: unknown[]): Promise<void> =>
    new Promise((resolve, reject) => {
      fn.async(fd, ...args, (err: unknown, result: number) => {
        if (err) reject(err);
        // errno is the pool thread's, out of reach: a failed writeback is an I/O error.
        else if (result !== 0) reject(Object.assign(new Error(`EIO: ${what} failed`), { code: 'EIO' }));
        else resolve();
      });
    });
  return {
    startWriteback: (offsetBytes, lengthBytes) => call(c.syncFileRange, 'sync_file_range', offsetBytes, lengthBytes, SYNC_FILE_RANGE_WRITE),
    async writeBackAndDrop(offsetBytes, lengthBytes) {
      const all = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
      await call(c.syncFileRange, 'sync_file_range', offsetBytes, lengthBytes, all);
      // posix_fadvise returns the error number itself; a refused hint loses nothing.
      await call(c.fadvise, 'posix_fadvise', offsetBytes, lengthBytes, POSIX_FADV_DONTNEED).catch(() => {});
    },
  };
}
