// @ts-check
/**
 * The zlib compressor of a compression worker: qemu's qcow2_compress, one raw deflate stream per
 * cluster at Z_DEFAULT_COMPRESSION (6), window bits -12 (qemu inflates with a 4 KiB window, so a
 * longer match distance would be invalid), memLevel 9, deflating straight into the slot's output.
 *
 * The system's libz (the library qemu-img itself uses), called through sparsify's own Node-API
 * addon (native/deflate, built by node-gyp at npm install into build/Release): Node bundles
 * Chromium's zlib fork, whose deflate hashes 4 bytes where zlib hashes 3 and so misses the short
 * matches a 4 KiB window lives on; on binaries and libraries its clusters came out 3.4 % bigger
 * than qemu's at the same settings (64 MiB of /usr/lib and /usr/bin: 31.59 MB against 30.54 MB;
 * no level, 4 to 9, closed the gap). The addon opens libz with RTLD_DEEPBIND (node exports its
 * own zlib's symbols; see deflate.c). It replaced koffi here, which now and then crashed the
 * process while loading in a worker thread. Where the addon or libz cannot be loaded, Node's zlib
 * is used instead (same format, a few percent bigger).
 *
 * Either way one stream per thread is reset after each cluster (deflateReset) rather than
 * created: deflateRawSync would build a stream object, allocate and free its native state and
 * collect the output in new chunks for every cluster, tens of MiB of garbage per second per
 * thread that the heap holds until the next GC.
 *
 * qemu gives deflate a cluster less one byte of room; a cluster of room (the slot has it) tells
 * the same apart: the stream ends with room to spare exactly when the result is smaller.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { constants, createDeflateRaw, deflateRawSync } from 'node:zlib';

/** Compresses `cluster` into `dest`; returns the compressed length (a cluster or more: not smaller). @typedef {(cluster: Buffer, dest: Buffer) => number} CompressInto */
/** @typedef {{ readonly library: 'system' | 'node', readonly compressInto: CompressInto }} ZlibCompressor */
/** @typedef {{ writeSync(flush: number, input: Uint8Array, inOffset: number, inLength: number, out: Uint8Array, outOffset: number, outLength: number): void }} ZlibHandle */

const LEVEL = 6;
const WINDOW_BITS = 12;
const MEM_LEVEL = 9;

/**
 * The system's zlib when it can be used here, else Node's.
 *
 * @param {number} clusterBytes
 * @returns {ZlibCompressor}
 */
export function zlibCompressor(clusterBytes) {
  const system = systemDeflate(clusterBytes);
  if (system !== undefined) return { library: 'system', compressInto: system };
  return { library: 'node', compressInto: nodeDeflate(clusterBytes) };
}

/**
 * The addon's file: two folders up from this one, which is src/qcow2/ (tests), dist/qcow2/ (tsc)
 * or dist/cli/ (the bundled worker), at the package's root.
 */
const ADDON_URL = new URL('../../build/Release/sparsify_deflate.node', import.meta.url);

/**
 * libz.so.1 through the addon, or undefined when either is missing.
 *
 * @param {number} clusterBytes
 * @returns {CompressInto | undefined}
 */
export function systemDeflate(clusterBytes) {
  /** @type {{ open(level: number, windowBits: number, memLevel: number): string, deflateInto(input: Uint8Array, output: Uint8Array, roomBytes: number): number }} */
  let addon;
  try {
    addon = createRequire(import.meta.url)(fileURLToPath(ADDON_URL));
    addon.open(LEVEL, -WINDOW_BITS, MEM_LEVEL);
  } catch {
    return undefined;
  }
  return (cluster, dest) => {
    const length = addon.deflateInto(cluster, dest, clusterBytes);
    return length < 0 ? clusterBytes : length;
  };
}

/**
 * Node's bundled zlib. It has no public call that deflates into a given buffer: this uses the
 * stream's native handle as zlib.deflateRawSync itself does (writeSync(flush, in, inOffset,
 * inLength, out, outOffset, outLength), the room left in `_writeState`), and deflateRawSync
 * where a Node release no longer has it.
 *
 * @param {number} clusterBytes
 * @returns {CompressInto}
 */
export function nodeDeflate(clusterBytes) {
  const options = { level: LEVEL, windowBits: WINDOW_BITS, memLevel: MEM_LEVEL };
  const stream = /** @type {import('node:zlib').DeflateRaw & { _handle?: ZlibHandle, _writeState?: Uint32Array }} */ (createDeflateRaw(options));
  const handle = stream._handle;
  const state = stream._writeState;
  if (typeof handle?.writeSync !== 'function' || !(state instanceof Uint32Array)) {
    stream.close();
    return (cluster, dest) => {
      const packed = deflateRawSync(cluster, options);
      if (packed.length < clusterBytes) dest.set(packed);
      return packed.length;
    };
  }
  return (cluster, dest) => {
    handle.writeSync(constants.Z_FINISH, cluster, 0, cluster.length, dest, 0, clusterBytes);
    const [outLeft, inLeft] = state;
    stream.reset();
    // Z_FINISH that leaves room and takes all the input has ended the stream.
    return outLeft === 0 || inLeft !== 0 ? clusterBytes : clusterBytes - /** @type {number} */ (outLeft);
  };
}
