/**
 * Zero-fill: the fallback for filesystems that cannot trim. A file of zeros is written until the
 * filesystem is full, synced and deleted; the image under it is served with detect-zeroes=unmap,
 * so those zero writes become holes.
 */
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../../context.js';
import { throwIfCancelled } from '../../errors.js';
import { errnoOf } from '../../util/errno.js';
import { fsyncDir } from '../../util/fsync.js';

/** One write; large enough to be efficient, small enough to bound memory. */
const CHUNK_BYTES = 1024 * 1024;
const ZERO_CHUNK = new Uint8Array(CHUNK_BYTES);

/** Fills the free space of the filesystem mounted at `dir` with zeros; returns the bytes written. */
export async function zeroFillFreeSpace(ctx: RunContext, dir: string): Promise<number> {
  const files: string[] = [];
  let total = 0;
  try {
    // vfat caps a file at 4 GiB (EFBIG): keep opening new files until ENOSPC.
    for (let full = false; !full; ) {
      const path = join(dir, `.sparsify-zero-fill-${files.length}`);
      const fh = await open(path, 'wx');
      files.push(path);
      try {
        const result = await fillFile(ctx, fh);
        total += result.bytes;
        full = result.full;
        await syncIgnoringFull(fh);
      } finally {
        await fh.close().catch(() => undefined);
      }
    }
  } finally {
    for (const f of files) await unlink(f).catch(() => undefined);
    await fsyncDir(dir);
  }
  ctx.log.debug(`${dir}: wrote ${total} bytes of zeros into free space`);
  return total;
}

async function fillFile(ctx: RunContext, fh: FileHandle): Promise<{ bytes: number; full: boolean }> {
  let bytes = 0;
  for (;;) {
    throwIfCancelled(ctx.signal);
    try {
      const { bytesWritten } = await fh.write(ZERO_CHUNK, 0, CHUNK_BYTES);
      if (bytesWritten === 0) return { bytes, full: true };
      bytes += bytesWritten;
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOSPC' || code === 'EDQUOT') return { bytes, full: true };
      if (code === 'EFBIG') return { bytes, full: bytes === 0 };
      throw err;
    }
  }
}

/** Delayed allocation may report ENOSPC only at fsync: the file is deleted anyway. */
async function syncIgnoringFull(fh: FileHandle): Promise<void> {
  try {
    await fh.sync();
  } catch (err) {
    const code = errnoOf(err);
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err;
  }
}
