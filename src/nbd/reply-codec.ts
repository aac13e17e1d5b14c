/**
 * Codecs of the transmission phase (proto.md §Request message, §Simple reply message,
 * §Structured reply chunk message, §Structured reply types): pure functions, no I/O.
 */
import type { Extent } from '../disk/types.js';
import {
  MAX_BLOCK_STATUS_BYTES, MAX_ERROR_CHUNK_BYTES, NBD_REPLY_TYPE_ERROR_OFFSET, NBD_REQUEST_MAGIC,
  NBD_STATE_HOLE, NBD_STATE_ZERO, REQUEST_HEADER_BYTES, SIMPLE_REPLY_BYTES, STRUCTURED_HEADER_BYTES,
  nbdProtocolError, parseString, readUint64, requireLength, view, writeUint64,
} from './protocol.js';

/** One transmission request (§Request message); `cookie` is below 2^32. */
export interface RequestHeader {
  readonly flags: number;
  readonly type: number;
  readonly cookie: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** §Request message: writes the 28-byte header into `out` at `at`. */
export function encodeRequestHeader(out: Uint8Array, at: number, req: RequestHeader): void {
  const dv = new DataView(out.buffer, out.byteOffset + at, REQUEST_HEADER_BYTES);
  dv.setUint32(0, NBD_REQUEST_MAGIC);
  dv.setUint16(4, req.flags);
  dv.setUint16(6, req.type);
  dv.setUint32(8, 0);
  dv.setUint32(12, req.cookie >>> 0);
  writeUint64(dv, 16, req.offsetBytes);
  dv.setUint32(24, req.lengthBytes >>> 0);
}

/** The 64-bit cookie of a reply as a number; exact for every cookie we send (below 2^32). */
function readCookie(dv: DataView, at: number): number {
  return dv.getUint32(at) * 0x100000000 + dv.getUint32(at + 4);
}

/** §Simple reply message: the 16-byte reply (magic checked by the caller). */
export function parseSimpleReply(buf: Uint8Array): { errno: number; cookie: number } {
  requireLength(buf, SIMPLE_REPLY_BYTES, 'simple reply');
  const dv = view(buf);
  return { errno: dv.getUint32(4), cookie: readCookie(dv, 8) };
}

/** A structured reply chunk header (§Structured reply chunk message). */
export interface ChunkHeader {
  readonly flags: number;
  readonly type: number;
  readonly cookie: number;
  readonly lengthBytes: number;
}

/** §Structured reply chunk message: the 20-byte chunk header (magic checked by the caller). */
export function parseChunkHeader(buf: Uint8Array): ChunkHeader {
  requireLength(buf, STRUCTURED_HEADER_BYTES, 'structured reply header');
  const dv = view(buf);
  return { flags: dv.getUint16(4), type: dv.getUint16(6), cookie: readCookie(dv, 8), lengthBytes: dv.getUint32(16) };
}

/** The byte range a request covers, to check reply chunks against. */
export interface RequestRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Throws unless [offset, offset+length) is non-empty and inside the request. */
export function checkContentRange(offsetBytes: number, lengthBytes: number, req: RequestRange, what: string): void {
  const end = req.offsetBytes + req.lengthBytes;
  if (lengthBytes <= 0 || offsetBytes < req.offsetBytes || offsetBytes + lengthBytes > end) {
    throw nbdProtocolError(
      `${what} covers ${offsetBytes}+${lengthBytes}, outside the request ${req.offsetBytes}+${req.lengthBytes}`,
    );
  }
}

/** §NBD_REPLY_TYPE_OFFSET_DATA: the 8-byte offset that starts the payload. */
export function parseDataOffset(buf: Uint8Array): number {
  requireLength(buf, 8, 'NBD_REPLY_TYPE_OFFSET_DATA offset');
  return readUint64(view(buf), 0, 'data chunk offset');
}

/** §NBD_REPLY_TYPE_OFFSET_HOLE: the 12-byte payload (offset, hole size). */
export function parseOffsetHole(payload: Uint8Array): { offsetBytes: number; lengthBytes: number } {
  if (payload.byteLength !== 12) throw nbdProtocolError(`hole chunk is ${payload.byteLength} bytes, not 12`);
  const dv = view(payload);
  return { offsetBytes: readUint64(dv, 0, 'hole chunk offset'), lengthBytes: dv.getUint32(8) };
}

/** A decoded error chunk (§Structured reply types, error chunks). */
export interface ErrorChunk {
  readonly errno: number;
  readonly message: string;
  /** Only in NBD_REPLY_TYPE_ERROR_OFFSET. */
  readonly offsetBytes: number | undefined;
}

/** §NBD_REPLY_TYPE_ERROR and _ERROR_OFFSET, and any unknown type with bit 15 set. */
export function parseErrorChunk(payload: Uint8Array, type: number): ErrorChunk {
  const fixed = type === NBD_REPLY_TYPE_ERROR_OFFSET ? 14 : 6;
  if (payload.byteLength < fixed || payload.byteLength > MAX_ERROR_CHUNK_BYTES) {
    throw nbdProtocolError(`error chunk of type ${type} has a bad length ${payload.byteLength}`);
  }
  const dv = view(payload);
  const errno = dv.getUint32(0);
  const messageBytes = dv.getUint16(4);
  if (errno === 0) throw nbdProtocolError(`error chunk of type ${type} carries error 0`);
  if (messageBytes > payload.byteLength - fixed) {
    const chunkBytes = payload.byteLength;
    throw nbdProtocolError(`error chunk message of ${messageBytes} bytes overruns the chunk (${chunkBytes} bytes)`);
  }
  const message = parseString(payload.subarray(6, 6 + messageBytes), 'error message');
  const offsetBytes =
    type === NBD_REPLY_TYPE_ERROR_OFFSET ? readUint64(dv, 6 + messageBytes, 'error offset') : undefined;
  return { errno, message, offsetBytes };
}

/**
 * §NBD_REPLY_TYPE_BLOCK_STATUS: the context id and the extents from the request's offset,
 * with neighbours of equal status merged and the last one clipped to the request.
 */
export function parseBlockStatus(payload: Uint8Array, req: RequestRange): { contextId: number; extents: Extent[] } {
  const n = payload.byteLength;
  if (n < 12 || (n - 4) % 8 !== 0 || n > MAX_BLOCK_STATUS_BYTES) {
    throw nbdProtocolError(`block status chunk has a bad length ${n}`);
  }
  const dv = view(payload);
  const extents: Extent[] = [];
  const end = req.offsetBytes + req.lengthBytes;
  let at = req.offsetBytes;
  for (let i = 4; i < n && at < end; i += 8) {
    const lengthBytes = dv.getUint32(i);
    if (lengthBytes === 0) throw nbdProtocolError(`block status descriptor at ${at} has length 0`);
    const flags = dv.getUint32(i + 4);
    const zero = (flags & NBD_STATE_ZERO) !== 0;
    const hole = (flags & NBD_STATE_HOLE) !== 0;
    pushExtent(extents, { offsetBytes: at, lengthBytes: Math.min(lengthBytes, end - at), zero, hole });
    at += lengthBytes;
  }
  return { contextId: dv.getUint32(0), extents };
}

function pushExtent(extents: Extent[], next: Extent): void {
  const last = extents[extents.length - 1];
  if (last && last.zero === next.zero && last.hole === next.hole) {
    extents[extents.length - 1] = { ...last, lengthBytes: last.lengthBytes + next.lengthBytes };
  } else {
    extents.push(next);
  }
}
