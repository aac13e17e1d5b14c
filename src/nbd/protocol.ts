/**
 * Pure codecs for the NBD protocol (NetworkBlockDevice/nbd doc/proto.md). No I/O here: every
 * function encodes into, or decodes from, a Uint8Array. All integers are big-endian. Every
 * length the server sends is bounds-checked before use: the server is untrusted input.
 */
import { SparsifyError } from '../errors.js';

// §Newstyle negotiation: the magics.
export const NBD_MAGIC_HI = 0x4e42444d; // 'NBDMAGIC'
export const NBD_MAGIC_LO = 0x41474943;
export const IHAVEOPT_HI = 0x49484156; // 'IHAVEOPT'
export const IHAVEOPT_LO = 0x454f5054;
export const CLISERV_MAGIC_HI = 0x00004202; // oldstyle 0x00420281861253
export const CLISERV_MAGIC_LO = 0x81861253;
/** §Fixed newstyle negotiation: the magic of every option reply (0x3e889045565a9). */
export const OPTION_REPLY_MAGIC_HI = 0x0003e889;
export const OPTION_REPLY_MAGIC_LO = 0x045565a9;
/** §Request message, §Simple reply message, §Structured reply chunk message. */
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// §Values / Handshake flags and Client flags.
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// §Values / Transmission flags.
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// §Option types.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// §Option reply types; errors have bit 31 set.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_POLICY = 0x80000002;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_PLATFORM = 0x80000004;
export const NBD_REP_ERR_TLS_REQD = 0x80000005;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_SHUTDOWN = 0x80000007;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;

// §NBD_REP_INFO information types.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// §Request types.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

// §Command flags.
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// §Structured reply flags and types; error chunk types have bit 15 set.
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_FLAG_ERROR = 1 << 15;
export const NBD_REPLY_TYPE_ERROR = NBD_REPLY_TYPE_FLAG_ERROR + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = NBD_REPLY_TYPE_FLAG_ERROR + 2;

// §base:allocation metadata context.
export const BASE_ALLOCATION = 'base:allocation';
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

// §Error values.
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// Sizes of the fixed parts of messages.
export const GREETING_BYTES = 18;
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_HEADER_BYTES = 20;

/** §Conventions: strings MUST be no longer than 4096 bytes. */
export const MAX_STRING_BYTES = 4096;
/** Our bound on an option reply payload; the largest we expect is an error string. */
export const MAX_OPTION_REPLY_BYTES = 64 * 1024;
/** §NBD_REPLY_TYPE_BLOCK_STATUS: servers SHOULD NOT send more than 2^20 extents per chunk. */
export const MAX_BLOCK_STATUS_BYTES = 4 + 8 * 2 ** 20;
/** Our bound on an error chunk: the message (≤ 4096) plus fixed fields and room for extensions. */
export const MAX_ERROR_CHUNK_BYTES = 64 * 1024;
/** §Size constraints: the default maximum payload, and the most any client must accept. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 2 ** 25;
/**
 * §Size constraints says the minimum block size MUST NOT be larger than 2^16, but qemu 7.2's
 * compress filter advertises the qcow2 cluster size (up to 2 MiB) as its minimum. We accept a
 * power of two up to the default maximum payload and honour it (the copier aligns to it).
 */
export const MAX_MINIMUM_BLOCK_BYTES = DEFAULT_MAX_PAYLOAD_BYTES;

/** A protocol violation; it ends the connection. */
export class NbdProtocolError extends SparsifyError {
  /** What broke the protocol, without the common prefix. */
  readonly detail: string;

  constructor(detail: string) {
    super('NBD_PROTOCOL', `NBD server broke the protocol: ${detail}`, {
      hint: 'the NBD server is broken or is not an NBD server; check its log',
    });
    this.name = 'NbdProtocolError';
    this.detail = detail;
  }
}

/** The error every protocol violation ends the connection with: NBD_PROTOCOL, saying what and where. */
export function nbdProtocolError(what: string): NbdProtocolError {
  return new NbdProtocolError(what);
}

const ERRNO_NAMES: Readonly<Record<number, string>> = {
  [NBD_EPERM]: 'EPERM',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'ENOMEM',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EOVERFLOW',
  [NBD_ENOTSUP]: 'ENOTSUP',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
};

/** The name of an NBD error value, e.g. 28 → "ENOSPC"; unknown values read as "error 42". */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `error ${errno}`;
}

const COMMAND_NAMES: Readonly<Record<number, string>> = {
  [NBD_CMD_READ]: 'read',
  [NBD_CMD_WRITE]: 'write',
  [NBD_CMD_DISC]: 'disconnect',
  [NBD_CMD_FLUSH]: 'flush',
  [NBD_CMD_TRIM]: 'trim',
  [NBD_CMD_WRITE_ZEROES]: 'write-zeroes',
  [NBD_CMD_BLOCK_STATUS]: 'block-status',
};

/** The name of a command type for messages, e.g. 6 → "write-zeroes". */
export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}

const OPTION_REPLY_ERRORS: Readonly<Record<number, string>> = {
  [NBD_REP_ERR_UNSUP]: 'option not supported (NBD_REP_ERR_UNSUP)',
  [NBD_REP_ERR_POLICY]: 'refused by server policy (NBD_REP_ERR_POLICY)',
  [NBD_REP_ERR_INVALID]: 'invalid option (NBD_REP_ERR_INVALID)',
  [NBD_REP_ERR_PLATFORM]: 'not supported on the server platform (NBD_REP_ERR_PLATFORM)',
  [NBD_REP_ERR_TLS_REQD]: 'the server requires TLS (NBD_REP_ERR_TLS_REQD)',
  [NBD_REP_ERR_UNKNOWN]: 'no such export (NBD_REP_ERR_UNKNOWN)',
  [NBD_REP_ERR_SHUTDOWN]: 'the server is shutting down (NBD_REP_ERR_SHUTDOWN)',
  [NBD_REP_ERR_BLOCK_SIZE_REQD]: 'the server requires block size negotiation (NBD_REP_ERR_BLOCK_SIZE_REQD)',
  [NBD_REP_ERR_TOO_BIG]: 'request or reply too big (NBD_REP_ERR_TOO_BIG)',
};

/** A human description of an option reply error type. */
export function optionErrorName(replyType: number): string {
  return OPTION_REPLY_ERRORS[replyType] ?? `error reply 0x${(replyType >>> 0).toString(16)}`;
}

/** A big-endian view of exactly the bytes of `buf`. */
export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Reads an unsigned 64-bit integer as a number; throws past 2^53 (offsets are exact to 8 PiB). */
export function readUint64(dv: DataView, at: number, what: string): number {
  const hi = dv.getUint32(at);
  if (hi >= 0x200000) throw nbdProtocolError(`${what} 0x${hi.toString(16)}xxxxxxxx is beyond 2^53`);
  return hi * 0x100000000 + dv.getUint32(at + 4);
}

/** Writes a number below 2^53 as an unsigned 64-bit integer. */
export function writeUint64(dv: DataView, at: number, value: number): void {
  dv.setUint32(at, Math.floor(value / 0x100000000));
  dv.setUint32(at + 4, value >>> 0);
}

/** Throws a protocol error when `buf` is shorter than `bytes`. */
export function requireLength(buf: Uint8Array, bytes: number, what: string): void {
  if (buf.byteLength < bytes) throw nbdProtocolError(`${what}: ${buf.byteLength} bytes, need ${bytes}`);
}

const utf8 = new TextDecoder('utf-8', { fatal: false });
/** UTF-8 encoder for names and queries. */
export const encoder = new TextEncoder();

/** Decodes a server string, bounded by MAX_STRING_BYTES. */
export function parseString(buf: Uint8Array, what: string): string {
  if (buf.byteLength > MAX_STRING_BYTES) throw nbdProtocolError(`${what} is ${buf.byteLength} bytes, over 4096`);
  return utf8.decode(buf);
}
