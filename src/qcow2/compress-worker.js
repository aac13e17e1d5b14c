// @ts-check
/**
 * A compression worker thread, started by compress-pool with this file (see compress-job for
 * what a job and its answer are). Plain JavaScript, type-checked through JSDoc, so that the
 * same file runs from `src/` under the test runner and from `dist/` (tsc copies it) without a
 * loader. A short final cluster is compressed padded with zeros, as qemu pads the last cluster
 * of an image whose size is not a multiple. With zlib, a cluster whose bytes look random
 * (compress-entropy) is answered -1 without deflating it, as qemu stores it after deflating it in
 * vain; zstd gives up on such data faster than the guess takes (on the bench's real image the
 * guess cost 3.5 times the zstd time it saved), so it runs on every cluster.
 * Nothing is allocated per cluster: zlib and zstd write straight into the slot's shared output.
 */
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { looksIncompressible } from './compress-entropy.js';
import { zlibCompressor } from './compress-zlib.js';

/** @typedef {import('./compress-job.js').CompressWorkerSetup} CompressWorkerSetup */
/** @typedef {import('./compress-job.js').CompressJob} CompressJob */
/** @typedef {import('./compress-job.js').CompressAnswer} CompressAnswer */
/** @typedef {{ CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number } }} ZstdBinding */
/** @typedef {import('./compress-zlib.js').CompressInto} CompressInto */

/**
 * @param {CompressWorkerSetup} setup
 * @returns {CompressInto}
 */
function compressor(setup) {
  if (setup.compressionType === 'zstd') {
    // qemu's qcow2_zstd_compress: one zstd frame per cluster at the default level, 3 (its
    // ZSTD_compressStream2 with ZSTD_e_end knows the size up front, as ZSTD_compressCCtx does).
    // One context per thread, reused: a fresh one per cluster costs more than compressing a
    // cluster of incompressible data (its tables are zeroed each time).
    if (setup.zstdModulePath === undefined) throw new Error('zstd compression without the zstd binding');
    const { CCtx } = /** @type {ZstdBinding} */ (createRequire(import.meta.url)(setup.zstdModulePath));
    const cctx = new CCtx();
    return (cluster, dest) => cctx.compress(dest, cluster, 3);
  }
  return zlibCompressor(setup.clusterBytes).compressInto;
}

/**
 * @param {import('node:worker_threads').MessagePort} port
 * @param {CompressWorkerSetup} setup
 */
function main(port, setup) {
  const clusterBytes = setup.clusterBytes;
  const compressInto = compressor(setup);
  const zeros = Buffer.alloc(clusterBytes);
  const padded = Buffer.alloc(clusterBytes);
  const counts = new Uint32Array(256);
  const guess = setup.compressionType === 'zlib';
  const slots = setup.slots.map((s) => ({ input: Buffer.from(s.input), output: Buffer.from(s.output) }));

  /**
   * @param {CompressJob} job
   * @returns {CompressAnswer}
   */
  function run(job) {
    const slot = slots[job.slot];
    if (slot === undefined) throw new Error(`no slot ${job.slot}`);
    const data = slot.input.subarray(0, job.lengthBytes);
    const count = Math.ceil(data.length / clusterBytes);
    const lengths = new Int32Array(count);
    let total = 0;
    for (let i = 0; i < count; i++) {
      /** @type {Buffer} */
      let cluster = data.subarray(i * clusterBytes, Math.min(data.length, (i + 1) * clusterBytes));
      if (cluster.equals(zeros.subarray(0, cluster.length))) continue;
      if (cluster.length < clusterBytes) {
        padded.fill(0);
        padded.set(cluster);
        cluster = padded;
      }
      if (guess && looksIncompressible(cluster, counts)) {
        lengths[i] = -1;
        continue;
      }
      const length = compressInto(cluster, slot.output.subarray(total));
      if (length >= clusterBytes) {
        lengths[i] = -1;
      } else {
        lengths[i] = length;
        total += length;
      }
    }
    return { slot: job.slot, lengths };
  }

  port.on('message', (/** @type {CompressJob} */ job) => {
    /** @type {CompressAnswer} */
    let answer;
    try {
      answer = run(job);
    } catch (err) {
      answer = { slot: job.slot, lengths: new Int32Array(0), error: String(err) };
    }
    port.postMessage(answer);
  });
}

if (parentPort === null) throw new Error('compress-worker runs as a worker thread of compress-pool');
main(parentPort, /** @type {CompressWorkerSetup} */ (workerData));
