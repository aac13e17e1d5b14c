// @ts-check
/**
 * The zlib compressor of a compression worker: qemu's qcow2_compress, one raw deflate stream per
 * cluster at Z_DEFAULT_COMPRESSION (6), window bits -12 (qemu inflates with a 4 KiB window, so a
 * longer match distance would be invalid), memLevel 9, deflating straight into the slot's output.
 *
 * The system's libz (the library qemu-img itself uses), called through koffi: Node bundles
 * Chromium's zlib fork, whose deflate hashes 4 bytes where zlib hashes 3 and so misses the short
 * matches a 4 KiB window lives on; on binaries and libraries its clusters came out 3.4 % bigger
 * than qemu's at the same settings (64 MiB of /usr/lib and /usr/bin: 31.59 MB against 30.54 MB;
 * no level, 4 to 9, closed the gap). libz is opened with RTLD_DEEPBIND: node exports its own
 * zlib's symbols, and without it libz's internal calls would bind to those and crash.
 * Where koffi or libz cannot be loaded, Node's zlib is used instead (same format, a few percent
 * bigger).
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
import { constants, createDeflateRaw, deflateRawSync } from 'node:zlib';

/** Compresses `cluster` into `dest`; returns the compressed length (a cluster or more: not smaller). @typedef {(cluster: Buffer, dest: Buffer) => number} CompressInto */
/** @typedef {{ readonly library: 'system' | 'node', readonly compressInto: CompressInto }} ZlibCompressor */
/** @typedef {{ writeSync(flush: number, input: Uint8Array, inOffset: number, inLength: number, out: Uint8Array, outOffset: number, outLength: number): void }} ZlibHandle */

const LEVEL = 6;
const WINDOW_BITS = 12;
const MEM_LEVEL = 9;
const Z_DEFLATED = 8;
const Z_DEFAULT_STRATEGY = 0;
const Z_FINISH = 4;
const Z_STREAM_END = 1;

/**
 * z_stream on an LP64 system (zlib.h): next_in, avail_in, total_in, next_out, avail_out,
 * total_out, msg, state, zalloc, zfree, opaque, data_type, adler, reserved.
 */
const Z_STREAM = { sizeBytes: 112, nextIn: 0, availIn: 8, nextOut: 24, availOut: 32 };

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
 * libz.so.1 through koffi, or undefined when either is missing or libz's types are not LP64's.
 *
 * @param {number} clusterBytes
 * @returns {CompressInto | undefined}
 */
function systemDeflate(clusterBytes) {
  /** @type {any} */
  let koffi;
  /** @type {any} */
  let lib;
  try {
    koffi = createRequire(import.meta.url)('koffi');
    lib = koffi.load('libz.so.1', { deep: true });
  } catch {
    return undefined;
  }
  const zlibVersion = lib.func('const char *zlibVersion()');
  const zlibCompileFlags = lib.func('unsigned long zlibCompileFlags()');
  // Bits 0-1 sizeof(uInt), 2-3 sizeof(uLong), 4-5 sizeof(voidpf): 1 = 32 bits, 2 = 64 bits.
  if ((Number(zlibCompileFlags()) & 0x3f) !== 0b101001) return undefined;
  const deflateInit2 = lib.func('int deflateInit2_(void *strm, int level, int method, int windowBits, int memLevel, int strategy, const char *version, int stream_size)');
  const deflate = lib.func('int deflate(void *strm, int flush)');
  const deflateReset = lib.func('int deflateReset(void *strm)');
  // Native memory: zlib keeps a pointer to its z_stream, which must not move.
  const strm = koffi.alloc('uint8_t', Z_STREAM.sizeBytes);
  const fields = new DataView(koffi.view(strm, Z_STREAM.sizeBytes));
  for (let i = 0; i < Z_STREAM.sizeBytes; i++) fields.setUint8(i, 0);
  if (deflateInit2(strm, LEVEL, Z_DEFLATED, -WINDOW_BITS, MEM_LEVEL, Z_DEFAULT_STRATEGY, zlibVersion(), Z_STREAM.sizeBytes) !== 0) return undefined;
  return (cluster, dest) => {
    // The slots are SharedArrayBuffers and the padded cluster a Buffer: neither ever moves.
    fields.setBigUint64(Z_STREAM.nextIn, koffi.address(cluster), true);
    fields.setUint32(Z_STREAM.availIn, cluster.length, true);
    fields.setBigUint64(Z_STREAM.nextOut, koffi.address(dest), true);
    fields.setUint32(Z_STREAM.availOut, clusterBytes, true);
    const status = deflate(strm, Z_FINISH);
    const outLeft = fields.getUint32(Z_STREAM.availOut, true);
    deflateReset(strm);
    return status === Z_STREAM_END && outLeft > 0 ? clusterBytes - outLeft : clusterBytes;
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
function nodeDeflate(clusterBytes) {
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
