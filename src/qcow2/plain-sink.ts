/**
 * A new uncompressed qcow2 v3 image as a copy destination, written without qemu: each write's
 * clusters are placed one after another at the end of the file (src/qcow2/image-map.ts) and
 * written there with one pwrite, as `qemu-img convert` writes them; `finish` appends the L2
 * tables and refcounts, then writes the L1 table and header and fsyncs. Until then the file is
 * not a valid image.
 *
 * Why not qemu-storage-daemon over NBD: every byte then crossed a socket (our send, the
 * daemon's receive) before the daemon's own pwrite, and the daemon's CPU competed with ours.
 *
 * Like the compressed writer, each guest cluster is written once and whole (the last one may end
 * at the end of the image); a cluster never written stays unallocated and reads as zero.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { openFileWriteback, type FileWriteback } from '../copy/write-behind.js';
import type { BlockSink } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { once } from '../util/async-stack.js';
import { pathError } from '../util/errno.js';
import { pwriteFully } from '../util/file-writes.js';
import { fsyncDir } from '../util/fsync.js';
import type { CompressedImageOptions } from './create-options.js';
import { ImageMap } from './image-map.js';

/** The uncompressed image being written. */
export interface PlainQcow2Sink extends BlockSink, AsyncDisposable {
  readonly path: string;
  /** Writes the metadata, fsyncs the file and its directory, and closes. */
  finish(): Promise<void>;
}

/** Creates (or truncates) `path` as an uncompressed qcow2 image of `sizeBytes`. */
export async function openPlainQcow2Sink(path: string, sizeBytes: number, options: CompressedImageOptions): Promise<PlainQcow2Sink> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'w');
  } catch (err) {
    throw pathError(err, 'output', path);
  }
  return new Sink(path, fh, sizeBytes, new ImageMap(sizeBytes, options.clusterBits, options.compressionType));
}

class Sink implements PlainQcow2Sink {
  readonly zeroInitialized = true;
  readonly writeAlignmentBytes: number;
  readonly #fh: FileHandle;
  readonly #map: ImageMap;
  readonly #writes = new Set<Promise<void>>();
  /** The disk writes while the copy goes on, and written pages leave the cache. */
  readonly #writeback: FileWriteback;
  readonly #close: () => Promise<void>;

  constructor(
    readonly path: string,
    fh: FileHandle,
    readonly sizeBytes: number,
    map: ImageMap,
  ) {
    this.#fh = fh;
    this.#map = map;
    this.writeAlignmentBytes = map.clusterBytes;
    this.#writeback = openFileWriteback(fh, (err) => pathError(err, 'output', path));
    this.#close = once(async () => {
      await this.#writeback.settle().catch(() => {});
      await fh.close();
    });
  }

  write(offsetBytes: number, data: Uint8Array): Promise<void> {
    const cs = this.#map.clusterBytes;
    const end = offsetBytes + data.length;
    if (offsetBytes < 0 || end > this.sizeBytes || offsetBytes % cs !== 0 || (data.length % cs !== 0 && end !== this.sizeBytes)) {
      return Promise.reject(
        new SparsifyError('INTERNAL', `write ${offsetBytes}+${data.length} to ${this.path} is not whole ${cs}-byte clusters of the image`),
      );
    }
    // Placed now, before any await: the clusters of one write are consecutive in the file.
    let hostBytes = -1;
    for (let g = offsetBytes / cs; g * cs < end; g++) {
      this.#checkUnmapped(g);
      const at = this.#map.placeUncompressed(g);
      if (hostBytes < 0) hostBytes = at;
    }
    const writing = this.#pwrite(data, hostBytes).then(() => this.#writeback.wrote(hostBytes, data.length));
    this.#writes.add(writing);
    void writing.catch(() => {}).then(() => this.#writes.delete(writing));
    return writing;
  }

  /** The image already reads as zero: only a cluster never written may be "zeroed". */
  writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    try {
      const cs = this.#map.clusterBytes;
      for (let g = Math.floor(offsetBytes / cs); g * cs < offsetBytes + lengthBytes; g++) this.#checkUnmapped(g);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Makes the data written so far durable (the image is valid only after `finish`). */
  async flush(): Promise<void> {
    await Promise.all(this.#writes);
    await this.#writeback.settle();
    await this.#sync();
  }

  async finish(): Promise<void> {
    await Promise.all(this.#writes);
    const meta = this.#map.finish();
    for (const p of [...meta.tail, ...meta.head]) await this.#pwrite(p.bytes, p.offsetBytes);
    await this.#writeback.settle();
    await this.#sync();
    await fsyncDir(dirname(this.path));
    await this.#close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.#close();
  }

  async #pwrite(data: Uint8Array, positionBytes: number): Promise<void> {
    try {
      await pwriteFully(this.#fh, data, positionBytes);
    } catch (err) {
      throw pathError(err, 'output', this.path);
    }
  }

  #checkUnmapped(guestCluster: number): void {
    if (this.#map.isMapped(guestCluster)) {
      throw new SparsifyError('INTERNAL', `cluster ${guestCluster} of ${this.path} written twice: clusters are written once`);
    }
  }

  async #sync(): Promise<void> {
    try {
      await this.#fh.sync();
    } catch (err) {
      throw pathError(err, 'output', this.path);
    }
  }
}
