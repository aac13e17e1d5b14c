import { open, stat, type FileHandle } from 'node:fs/promises';
import type { BlockSource } from '../disk/types.js';
import { pathError } from '../util/errno.js';
import { openQcow2FileSource } from './qcow2-file-source.js';
import { rawFileSource } from './raw-file-source.js';

/** A source for the copier that is closed after the copy. */
export type CopySource = BlockSource & AsyncDisposable;

/** The input image as served, and where it lives. */
export interface CopyInput {
  readonly path: string;
  readonly format: string;
}

/**
 * The copier's source: the one place that decides how the input is read. A raw input read as it
 * is (no overlay) is read from its file with pread (src/copy/raw-file-source.ts); a qcow2 one
 * through its own L1/L2 tables and pread when the image is simple enough
 * (src/copy/qcow2-file-source.ts, which says why not otherwise, to `onFallback`). Anything else
 * (another format, an overlay, a block device, a size that differs from the export's) is read
 * through `device`, the NBD export.
 */
export async function openCopySource(
  device: BlockSource,
  input: CopyInput | undefined,
  onFallback?: (reason: string) => void,
): Promise<CopySource> {
  const passThrough: CopySource = {
    sizeBytes: device.sizeBytes,
    canExtents: device.canExtents,
    read: (offsetBytes, lengthBytes) => device.read(offsetBytes, lengthBytes),
    extents: (offsetBytes, lengthBytes) => device.extents(offsetBytes, lengthBytes),
    ...(device.readInto ? { readInto: (offsetBytes: number, dest: Uint8Array) => device.readInto!(offsetBytes, dest) } : {}),
    [Symbol.asyncDispose]: async () => {},
  };
  if (!input || (input.format !== 'raw' && input.format !== 'qcow2')) return passThrough;
  const st = await stat(input.path).catch(() => undefined);
  if (!st?.isFile()) return passThrough;
  if (input.format === 'raw') {
    if (st.size !== device.sizeBytes) return passThrough;
    return rawFileSource(await openInput(input.path), input.path, device);
  }
  const fh = await openInput(input.path);
  const opened = await openQcow2FileSource(fh, input.path, st.size, device).catch(async (err: unknown) => {
    await fh.close();
    throw err;
  });
  if (opened.ok) return opened.source;
  await fh.close();
  onFallback?.(`${input.path} is read through qemu: ${opened.reason}`);
  return passThrough;
}

async function openInput(path: string): Promise<FileHandle> {
  return open(path, 'r').catch((err: unknown) => {
    throw pathError(err, 'file', path);
  });
}
