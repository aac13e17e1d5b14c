/**
 * A new compressed qcow2 v3 image as a copy destination, written without qemu: every write is
 * compressed on worker threads (one per core), and the results are placed in the file in the
 * order the writes came, front to back. `finish` writes the L2 tables, refcounts, L1 table and
 * header and fsyncs; until then the file is not a valid image.
 *
 * Like qemu's compress filter, each guest cluster is written once and whole (the last one may end
 * at the end of the image): a cluster that reads as zero stays unallocated, one that does not
 * compress below a cluster is stored uncompressed.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import type { BlockSink } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { once } from '../util/async-stack.js';
import { pathError } from '../util/errno.js';
import { fsyncDir } from '../util/fsync.js';
import { AppendFile } from './append-file.js';
import { CompressPool, type CompressResult } from './compress-pool.js';
import type { CompressedImageOptions } from './create-options.js';
import { ImageMap } from './image-map.js';

/**
 * The zstd binding: libzstd's own API over N-API, with contexts that can be reused (its
 * package builds it with node-gyp when installed; where that failed, qemu compresses instead).
 */
const ZSTD_MODULE = 'zstd-napi/binding';
/** Jobs handed to the pool per compression thread before `write` waits. */
const JOBS_PER_THREAD = 2;
/** The largest job: the copier's chunk, and a multiple of every cluster size (512 B – 2 MiB). */
const JOB_BYTES = 2 * 1024 * 1024;
const EMPTY = new Uint8Array(0);

/** The compressed image being written. */
export interface CompressedQcow2Sink extends BlockSink, AsyncDisposable {
  readonly path: string;
  /** Writes what is pending and the metadata, fsyncs the file and its directory, and closes. */
  finish(): Promise<void>;
}

/** Where the zstd binding is, or undefined when it cannot be loaded here (then qemu compresses). */
export function zstdModulePath(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const path = require.resolve(ZSTD_MODULE);
    require(path);
    return path;
  } catch {
    return undefined;
  }
}

/** Creates (or truncates) `path` as a compressed qcow2 image of `sizeBytes`. */
export async function openCompressedQcow2Sink(
  path: string,
  sizeBytes: number,
  options: CompressedImageOptions & { readonly threads?: number },
): Promise<CompressedQcow2Sink> {
  const zstd = options.compressionType === 'zstd' ? zstdModulePath() : undefined;
  if (options.compressionType === 'zstd' && zstd === undefined) {
    throw new SparsifyError('UNSUPPORTED', `zstd compression needs the ${ZSTD_MODULE} package`);
  }
  let fh: FileHandle;
  try {
    fh = await open(path, 'w');
  } catch (err) {
    throw pathError(err, 'output', path);
  }
  const threads = options.threads ?? availableParallelism();
  const map = new ImageMap(sizeBytes, options.clusterBits, options.compressionType);
  const pool = new CompressPool(
    { clusterBytes: map.clusterBytes, compressionType: options.compressionType, ...(zstd ? { zstdModulePath: zstd } : {}) },
    JOB_BYTES,
    threads,
    threads * JOBS_PER_THREAD,
  );
  return new Sink(path, fh, sizeBytes, map, pool, threads * JOBS_PER_THREAD);
}

class Sink implements CompressedQcow2Sink {
  readonly zeroInitialized = true;
  /**
   * The copier's sizes before it moved to 8 MiB chunks and 32 MiB in flight (a gain for plain
   * outputs): compression is the bottleneck here, and the larger chunks raised the 1 TiB memory
   * test's peak from about 200 to 300 MiB.
   */
  readonly copySizes = { chunkBytes: 2 * 1024 * 1024, maxInFlightBytes: 16 * 1024 * 1024 };
  readonly writeAlignmentBytes: number;
  readonly #fh: FileHandle;
  readonly #map: ImageMap;
  readonly #pool: CompressPool;
  readonly #file: AppendFile;
  readonly #maxJobs: number;
  readonly #waiting: Array<() => void> = [];
  readonly #close: () => Promise<void>;
  #jobs = 0;
  /** The last write to be placed: writes are placed one after another, in the order they came. */
  #tail: Promise<void> = Promise.resolve();
  #failure: unknown;

  constructor(
    readonly path: string,
    fh: FileHandle,
    readonly sizeBytes: number,
    map: ImageMap,
    pool: CompressPool,
    maxJobs: number,
  ) {
    this.#fh = fh;
    this.#map = map;
    this.#pool = pool;
    this.#maxJobs = maxJobs;
    this.writeAlignmentBytes = map.clusterBytes;
    this.#file = new AppendFile(fh, map.endBytes, (err) => pathError(err, 'output', path));
    this.#close = once(async () => {
      try {
        await pool[Symbol.asyncDispose]();
      } finally {
        await fh.close();
      }
    });
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    this.#checkWrite(offsetBytes, data.length);
    const jobBytes = this.#pool.jobBytes;
    const jobs: Promise<void>[] = [];
    for (let at = 0; at < data.length; at += jobBytes) jobs.push(this.#writeJob(offsetBytes + at, data.subarray(at, at + jobBytes)));
    await Promise.all(jobs);
  }

  async #writeJob(offsetBytes: number, data: Uint8Array): Promise<void> {
    while (this.#jobs >= this.#maxJobs) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#jobs++;
    const compressed = this.#pool.compress(data);
    compressed.catch(() => {}); // its failure is thrown where the write is placed
    try {
      await this.#inOrder(async () => this.#place(offsetBytes, data, await compressed));
    } finally {
      // Placed (its bytes copied out), or never to be placed: its slot goes to the next job.
      compressed.then((r) => r.release(), () => {});
      this.#jobs--;
      this.#waiting.shift()?.();
    }
  }

  /** The image already reads as zero: only a cluster never written may be "zeroed". */
  writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.#inOrder(async () => {
      const cs = this.#map.clusterBytes;
      for (let g = Math.floor(offsetBytes / cs); g * cs < offsetBytes + lengthBytes; g++) this.#checkUnmapped(g);
    });
  }

  async flush(): Promise<void> {
    await this.#inOrder(() => this.#file.drain());
    await this.#sync();
  }

  async finish(): Promise<void> {
    await this.#inOrder(async () => {
      const meta = this.#map.finish();
      for (const p of meta.tail) await this.#file.append(p.offsetBytes, p.bytes);
      await this.#file.drain();
      for (const p of meta.head) await this.#file.writeAt(p.offsetBytes, p.bytes);
    });
    await this.#sync();
    await fsyncDir(dirname(this.path));
    await this.#close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.#close();
  }

  /** Runs `step` after every step before it; after a failure every later step fails with it. */
  #inOrder(step: () => Promise<void>): Promise<void> {
    const run = this.#tail.then(() => {
      if (this.#failure !== undefined) throw this.#failure;
      return step();
    });
    this.#tail = run.catch((err: unknown) => {
      this.#failure ??= err;
    });
    return run;
  }

  /** Places each cluster of a job in the map and appends its bytes (copied: the slot and `data` are then reused). */
  async #place(offsetBytes: number, data: Uint8Array, result: CompressResult): Promise<void> {
    const cs = this.#map.clusterBytes;
    const first = offsetBytes / cs;
    let at = 0;
    for (let i = 0; i < result.lengths.length; i++) {
      const length = result.lengths[i]!;
      this.#checkUnmapped(first + i);
      if (length > 0) {
        const offset = this.#map.placeCompressed(first + i, length);
        await this.#file.append(offset, result.out.subarray(at, at + length));
        at += length;
      } else if (length < 0) {
        const offset = this.#map.placeUncompressed(first + i);
        await this.#file.append(offset, data.subarray(i * cs, (i + 1) * cs));
        await this.#file.append(offset + cs, EMPTY); // a short final cluster is padded with zeros
      }
    }
  }

  #checkWrite(offsetBytes: number, lengthBytes: number): void {
    const cs = this.#map.clusterBytes;
    const end = offsetBytes + lengthBytes;
    if (offsetBytes < 0 || end > this.sizeBytes || offsetBytes % cs !== 0 || (lengthBytes % cs !== 0 && end !== this.sizeBytes)) {
      throw new SparsifyError('INTERNAL', `write ${offsetBytes}+${lengthBytes} to ${this.path} is not whole ${cs}-byte clusters of the image`);
    }
  }

  #checkUnmapped(guestCluster: number): void {
    if (this.#map.isMapped(guestCluster)) {
      throw new SparsifyError('INTERNAL', `cluster ${guestCluster} of ${this.path} written twice: compressed clusters are written once`);
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
