/**
 * What the compression pool and its worker threads say to each other. A job is guest data
 * starting on a cluster boundary, in one of the pool's slots. For each cluster the worker answers
 * a length: 0 when the cluster reads as zero (left unallocated), -1 when compression does not make
 * it smaller than a cluster (qemu then stores the cluster uncompressed, from the caller's data),
 * else the length of its compressed form, which follows the previous ones in the slot's output.
 */

/** One job's shared buffers: the data in (copied by the main thread) and the stored clusters out. */
export interface CompressSlot {
  readonly input: SharedArrayBuffer;
  /** At least `input.byteLength + outputSlackBytes(clusterBytes)`: a compressor may need room past a cluster. */
  readonly output: SharedArrayBuffer;
}

/** Sent to a worker as workerData. */
export interface CompressWorkerSetup {
  readonly clusterBytes: number;
  /** Every slot of the pool: any thread may run the job of any slot. */
  readonly slots: readonly CompressSlot[];
  readonly compressionType: 'zlib' | 'zstd';
  /** Resolved path of zstd-napi's binding (needed for zstd). */
  readonly zstdModulePath?: string;
}

/** One job: a message to the worker; its data is the first `lengthBytes` of its slot's input. */
export interface CompressJob {
  readonly slot: number;
  readonly lengthBytes: number;
}

/** The answer to a job; the stored clusters are at the start of the slot's output. */
export interface CompressAnswer {
  readonly slot: number;
  readonly lengths: Int32Array;
  readonly error?: string;
}

/**
 * Room a slot's output needs past its input's size: the compressor writes into the output with
 * room for its worst case (zstd's ZSTD_COMPRESSBOUND: a cluster, 1/256 more, and at most 64
 * bytes more for inputs under 128 KiB); a result of a cluster or more is then dropped.
 */
export function outputSlackBytes(clusterBytes: number): number {
  return Math.ceil(clusterBytes / 256) + 64;
}
