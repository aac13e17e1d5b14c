/**
 * The body of a compression worker thread. It is started from its source text (`eval`), so it
 * runs the same from `src/` under the test runner and from `dist/`: it must use nothing from
 * outside its own body but `require`, and gets the zstd binding's resolved path in workerData.
 *
 * A job is guest data starting on a cluster boundary. For each cluster it answers a length:
 * 0 when the cluster reads as zero (left unallocated), -1 when compression does not make it
 * smaller than a cluster (qemu then stores the cluster uncompressed), else the length of its
 * compressed form, which follows the previous ones in the shared output buffer. A short final cluster is compressed
 * padded with zeros, as qemu pads the last cluster of an image whose size is not a multiple.
 */

/** Sent to a worker as workerData. */
export interface CompressWorkerSetup {
  readonly clusterBytes: number;
  /** The job's data, copied in by the main thread (shared: no buffer per job to collect). */
  readonly input: SharedArrayBuffer;
  /** The compressed clusters, one after another; as large as `input`. */
  readonly output: SharedArrayBuffer;
  readonly compressionType: 'zlib' | 'zstd';
  /** Absolute path of the zstd binding (an eval worker resolves modules from the cwd). */
  readonly zstdModulePath?: string;
}

/** One job: a message to the worker; its data is the first `lengthBytes` of `input`. */
export interface CompressJob {
  readonly id: number;
  readonly lengthBytes: number;
}

/** The answer to a job; the compressed bytes are at the start of `output`. */
export interface CompressAnswer {
  readonly id: number;
  readonly lengths: Int32Array;
  readonly error?: string;
}

/** The worker's program; never called in the main thread. */
export function compressWorkerMain(): void {
  const { parentPort, workerData } = require('node:worker_threads') as typeof import('node:worker_threads');
  const zlib = require('node:zlib') as typeof import('node:zlib');
  const setup = workerData as CompressWorkerSetup;
  const JOBS_PER_GC = 4;
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
  // The compressors' output buffers live outside the JS heap, which a job barely touches: V8
  // would leave them for a long time (measured: ~40 MiB more RSS per zstd thread). A minor GC
  // every few jobs frees them; `gc` comes from a fresh context once --expose-gc is set.
  require('node:v8').setFlagsFromString('--expose-gc');
  const gc = (require('node:vm') as typeof import('node:vm')).runInNewContext('gc') as ((o: { type: 'minor' }) => void) | undefined;
  let jobs = 0;
  const input = Buffer.from(setup.input);
  const output = Buffer.from(setup.output);

  function run(job: CompressJob): CompressAnswer {
    const data = input.subarray(0, job.lengthBytes);
    const count = Math.ceil(data.length / clusterBytes);
    const lengths = new Int32Array(count);
    let total = 0;
    for (let i = 0; i < count; i++) {
      let cluster: Buffer = data.subarray(i * clusterBytes, Math.min(data.length, (i + 1) * clusterBytes));
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
      output.set(packed, total);
      total += packed.length;
    }
    return { id: job.id, lengths };
  }

  parentPort!.on('message', (job: CompressJob) => {
    if (++jobs % JOBS_PER_GC === 0) gc?.({ type: 'minor' });
    let answer: CompressAnswer;
    try {
      answer = run(job);
    } catch (err) {
      answer = { id: job.id, lengths: new Int32Array(0), error: String(err) };
    }
    parentPort!.postMessage(answer);
  });
}
