import { writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/**
 * Writes up to this size are made with a synchronous pwrite. An async FileHandle.write costs a
 * threadpool round trip (~50 µs measured here) against ~9 µs for the pwrite itself, and a copy
 * of scattered data is mostly small writes: on a 1 GiB disk with half its 4 KiB granules zero,
 * sync small writes took the copy from 1.3–2.4 s to 0.8–1.0 s. Blocking the event loop for one
 * 64 KiB page-cache write is harmless; larger writes stay async.
 */
const SYNC_WRITE_MAX_BYTES = 64 * 1024;

/** Writes all of `data` at `positionBytes`, with as many pwrites as it takes; errors are the caller's to word. */
export async function pwriteFully(fh: FileHandle, data: Uint8Array, positionBytes: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const n = data.length - done;
    const position = positionBytes + done;
    done += n <= SYNC_WRITE_MAX_BYTES ? writeSync(fh.fd, data, done, n, position) : (await fh.write(data, done, n, position)).bytesWritten;
  }
}
