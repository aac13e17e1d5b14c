/**
 * The body of a compression worker thread. It is started from its source text (`eval`), so it
 * runs the same from `src/` under the test runner and from `dist/`: it must use nothing from
 * outside its own body but `require`, and gets the zstd binding's resolved path in workerData.
 *
 * A job is guest data starting on a cluster boundary. For each cluster it answers a length:
 * 0 when the cluster reads as zero (left unallocated), -1 when compression does not make it
 * smaller than a cluster (qemu then stores the cluster uncompressed), else the length of its
 * compressed form, which follows the previous ones in `out`. A short final cluster is compressed
 * padded with zeros, as qemu pads the last cluster of an image whose size is not a multiple.
 */

/** Sent to a worker as workerData. */
export interface CompressWorkerSetup {
  readonly clusterBytes: number;
  readonly compressionType: 'zlib' | 'zstd';
  /** Absolute path of the zstd binding (an eval worker resolves modules from the cwd). */
  readonly zstdModulePath?: string;
}

/** One job: a message to the worker. */
export interface CompressJob {
  readonly id: number;
  readonly data: Uint8Array;
}

/** The answer to a job. */
export interface CompressResult {
  readonly id: number;
  readonly lengths: Int32Array;
  readonly out: Uint8Array;
  readonly error?: string;
}

/** The worker's program; never called in the main thread. */
/* eslint-disable @typescript-eslint/no-require-imports */
export function compressWorkerMain(): void {
  const { parentPort, workerData } = require('node:worker_threads') as typeof import('node:worker_threads');
  const zlib = require('node:zlib') as typeof import('node:zlib');
  const setup = workerData as CompressWorkerSetup;
  const clusterBytes = setup.clusterBytes;
  let compress: (cluster: Buffer) => Uint8Array;
  if (setup.compressionType === 'zstd') {
    const { Encoder } = require(setup.zstdModulePath!) as { Encoder: new (level: number) => { encodeSync(b: Buffer): Buffer } };
    const encoder = new Encoder(3); // qemu leaves zstd at its default level, 3
    compress = (cluster) => encoder.encodeSync(cluster);
  } else {
    // qemu's qcow2_compress: deflateInit2(Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, ...): raw deflate, 4 KiB window.
    const options = { level: 6, windowBits: 12, memLevel: 9 };
    compress = (cluster) => zlib.deflateRawSync(cluster, options);
  }
  const zeros = Buffer.alloc(clusterBytes);
  const padded = Buffer.alloc(clusterBytes);

  function run(job: CompressJob): CompressResult {
    const data = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength);
    const count = Math.ceil(data.length / clusterBytes);
    const lengths = new Int32Array(count);
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < count; i++) {
      let cluster = data.subarray(i * clusterBytes, Math.min(data.length, (i + 1) * clusterBytes));
      if (cluster.equals(zeros.subarray(0, cluster.length))) continue;
      if (cluster.length < clusterBytes) {
        padded.fill(0);
        padded.set(cluster);
        cluster = padded;
      }
      const packed = compress(cluster);
      if (packed.length >= clusterBytes) {
        lengths[i] = -1;
        continue;
      }
      lengths[i] = packed.length;
      parts.push(packed);
      total += packed.length;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return { id: job.id, lengths, out };
  }

  parentPort!.on('message', (job: CompressJob) => {
    let result: CompressResult;
    try {
      result = run(job);
    } catch (err) {
      result = { id: job.id, lengths: new Int32Array(0), out: new Uint8Array(0), error: String(err) };
    }
    parentPort!.postMessage(result, [result.out.buffer as ArrayBuffer, result.lengths.buffer as ArrayBuffer]);
  });
}
