// @ts-check
/**
 * A cheap guess, before deflate runs, that a cluster will not compress: its bytes are spread
 * over all 256 values almost evenly (compressed files, encrypted or random data). qemu deflates
 * such a cluster in full, finds the result no smaller than a cluster and stores the cluster
 * uncompressed; guessing it first stores the same cluster for a byte histogram's cost (about a
 * tenth of a deflate's). Not used for zstd, which gives up on such data faster than this.
 *
 * The guess is the cluster's order-0 (byte frequency) entropy: a compressor can code the bytes
 * of a cluster with entropy H in no fewer than about H/8 of its bytes unless it finds repeats.
 * Above INCOMPRESSIBLE_BITS_PER_BYTE that bound saves under 0.6 %, less than a deflate block's
 * Huffman tables cost, so a cluster is guessed incompressible. The guess is wrong for clusters
 * that deflate would have shrunk a little (the end of a compressed file and the start of the
 * next) and for evenly spread data that repeats within deflate's 4 KiB window; such a cluster is
 * stored uncompressed, as if it had not compressed: the image is correct, only a little bigger.
 * scripts/benchmark/compress-guess.ts counts it: on the bench's real image (host binaries,
 * libraries and docs beside random garbage) 58 % of the clusters were guessed incompressible,
 * 6.5 % of all wrongly, which cost 0.24 % of the stored bytes and saved 45 % of deflate's time.
 *
 * Plain JavaScript for the worker thread (see compress-worker.js).
 */

/**
 * Order-0 entropy, in bits per byte, above which a cluster is stored without compressing it. The
 * Miller–Madow corrected estimate of uniformly random data is 8.00 whatever the cluster size;
 * deflate's output from data at 7.95 is about a cluster (tables and block headers included).
 */
export const INCOMPRESSIBLE_BITS_PER_BYTE = 7.95;

/** Below this many bytes a histogram says too little: such clusters are always compressed. */
export const MIN_GUESS_BYTES = 4096;

/**
 * Order-0 entropy of `data` in bits per byte, with the Miller–Madow correction (+(K-1)/(2N ln 2),
 * K the byte values seen), which removes most of a sample's downward bias: 64 KiB of random
 * bytes measure 8.00, not 7.997, and 4 KiB 8.00, not 7.955.
 *
 * @param {Uint8Array} data
 * @param {Uint32Array} counts 256 counters, overwritten (passed in so that nothing is allocated)
 * @returns {number}
 */
export function byteEntropy(data, counts) {
  counts.fill(0);
  const n = data.length;
  // @ts-expect-error: i < n, so data[i] is a byte value and counts[data[i]] a counter
  for (let i = 0; i < n; i++) counts[data[i]]++;
  let sum = 0;
  let seen = 0;
  for (let b = 0; b < 256; b++) {
    const c = /** @type {number} */ (counts[b]);
    if (c === 0) continue;
    seen++;
    sum += c * Math.log2(c);
  }
  if (n === 0) return 0;
  return Math.log2(n) - sum / n + (seen - 1) / (2 * n * Math.LN2);
}

/**
 * True when `cluster` is guessed not to compress below its size (see above); never for clusters
 * under MIN_GUESS_BYTES.
 *
 * @param {Uint8Array} cluster
 * @param {Uint32Array} counts 256 counters to use (see byteEntropy)
 * @returns {boolean}
 */
export function looksIncompressible(cluster, counts) {
  return cluster.length >= MIN_GUESS_BYTES && byteEntropy(cluster, counts) > INCOMPRESSIBLE_BITS_PER_BYTE;
}
