/**
 * Codecs of the handshake phase (proto.md §Newstyle negotiation, §Fixed newstyle negotiation,
 * §Option types, §Option reply types): pure functions, no I/O.
 */
import { SparsifyError } from '../errors.js';
import {
  CLISERV_MAGIC_HI, CLISERV_MAGIC_LO, GREETING_BYTES, IHAVEOPT_HI, IHAVEOPT_LO, MAX_MINIMUM_BLOCK_BYTES,
  MAX_OPTION_REPLY_BYTES, NBD_INFO_BLOCK_SIZE, NBD_INFO_DESCRIPTION, NBD_INFO_EXPORT, NBD_INFO_NAME,
  NBD_MAGIC_HI, NBD_MAGIC_LO, OPTION_HEADER_BYTES, OPTION_REPLY_HEADER_BYTES, OPTION_REPLY_MAGIC_HI,
  OPTION_REPLY_MAGIC_LO, encoder, nbdProtocolError, parseString, readUint64, requireLength, view,
} from './protocol.js';

/** §Newstyle negotiation: the 18-byte server greeting → handshake flags. */
export function parseGreeting(buf: Uint8Array): { handshakeFlags: number } {
  requireLength(buf, GREETING_BYTES, 'greeting');
  const dv = view(buf);
  if (dv.getUint32(0) !== NBD_MAGIC_HI || dv.getUint32(4) !== NBD_MAGIC_LO) {
    throw nbdProtocolError('bad magic in the greeting (not an NBD server?)');
  }
  if (dv.getUint32(8) === CLISERV_MAGIC_HI && dv.getUint32(12) === CLISERV_MAGIC_LO) {
    throw new SparsifyError('UNSUPPORTED', 'the NBD server speaks the oldstyle protocol, which is not supported', {
      hint: 'use a newer NBD server (qemu-nbd, qemu-storage-daemon, nbdkit)',
    });
  }
  if (dv.getUint32(8) !== IHAVEOPT_HI || dv.getUint32(12) !== IHAVEOPT_LO) {
    throw nbdProtocolError('bad IHAVEOPT magic in the greeting');
  }
  return { handshakeFlags: dv.getUint16(16) };
}

/** §Newstyle negotiation: the 32-bit client flags. */
export function encodeClientFlags(flags: number): Uint8Array {
  const out = new Uint8Array(4);
  view(out).setUint32(0, flags >>> 0);
  return out;
}

/** §Newstyle negotiation: an option request, header and data. */
export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(OPTION_HEADER_BYTES + data.byteLength);
  const dv = view(out);
  dv.setUint32(0, IHAVEOPT_HI);
  dv.setUint32(4, IHAVEOPT_LO);
  dv.setUint32(8, option);
  dv.setUint32(12, data.byteLength);
  out.set(data, OPTION_HEADER_BYTES);
  return out;
}

/** §NBD_OPT_INFO and NBD_OPT_GO: the option data (export name, information requests). */
export function encodeGoData(exportName: string, infoRequests: readonly number[]): Uint8Array {
  const name = encoder.encode(exportName);
  const out = new Uint8Array(4 + name.byteLength + 2 + 2 * infoRequests.length);
  const dv = view(out);
  dv.setUint32(0, name.byteLength);
  out.set(name, 4);
  dv.setUint16(4 + name.byteLength, infoRequests.length);
  infoRequests.forEach((info, i) => dv.setUint16(6 + name.byteLength + 2 * i, info));
  return out;
}

/** §NBD_OPT_SET_META_CONTEXT: the option data (export name, queries). */
export function encodeMetaContextData(exportName: string, queries: readonly string[]): Uint8Array {
  const parts = [exportName, ...queries].map((s) => encoder.encode(s));
  const total = parts.reduce((n, p) => n + 4 + p.byteLength, 4);
  const out = new Uint8Array(total);
  const dv = view(out);
  let at = 0;
  parts.forEach((p, i) => {
    if (i === 1) {
      dv.setUint32(at, queries.length);
      at += 4;
    }
    dv.setUint32(at, p.byteLength);
    out.set(p, at + 4);
    at += 4 + p.byteLength;
  });
  if (queries.length === 0) dv.setUint32(at, 0);
  return out;
}

/** §NBD_OPT_EXPORT_NAME: the option data is the bare name. */
export function encodeExportNameData(exportName: string): Uint8Array {
  return encoder.encode(exportName);
}

/** An option reply header (§Fixed newstyle negotiation). */
export interface OptionReplyHeader {
  readonly option: number;
  readonly replyType: number;
  readonly lengthBytes: number;
}

/** §Fixed newstyle negotiation: a 20-byte option reply header, checked against the option sent. */
export function parseOptionReplyHeader(buf: Uint8Array, sentOption: number): OptionReplyHeader {
  requireLength(buf, OPTION_REPLY_HEADER_BYTES, 'option reply header');
  const dv = view(buf);
  if (dv.getUint32(0) !== OPTION_REPLY_MAGIC_HI || dv.getUint32(4) !== OPTION_REPLY_MAGIC_LO) {
    throw nbdProtocolError(`bad magic in the reply to option ${sentOption}`);
  }
  const option = dv.getUint32(8);
  if (option !== sentOption) throw nbdProtocolError(`reply to option ${option} while option ${sentOption} was sent`);
  const lengthBytes = dv.getUint32(16);
  if (lengthBytes > MAX_OPTION_REPLY_BYTES) {
    throw nbdProtocolError(`reply to option ${sentOption} has an oversize length ${lengthBytes}`);
  }
  return { option, replyType: dv.getUint32(12), lengthBytes };
}

/** One NBD_REP_INFO payload (§NBD_REP_INFO). */
export type InfoReply =
  | { readonly kind: 'export'; readonly sizeBytes: number; readonly transmissionFlags: number }
  | {
      readonly kind: 'block-size';
      readonly minimumBytes: number;
      readonly preferredBytes: number;
      readonly maximumBytes: number;
    }
  | { readonly kind: 'name' | 'description'; readonly text: string }
  | { readonly kind: 'unknown'; readonly infoType: number };

/** §NBD_REP_INFO: decodes one information reply; unknown types are returned, not rejected. */
export function parseInfoReply(payload: Uint8Array): InfoReply {
  requireLength(payload, 2, 'NBD_REP_INFO');
  const dv = view(payload);
  const infoType = dv.getUint16(0);
  switch (infoType) {
    case NBD_INFO_EXPORT:
      if (payload.byteLength !== 12) throw nbdProtocolError(`NBD_INFO_EXPORT is ${payload.byteLength} bytes, not 12`);
      return { kind: 'export', sizeBytes: readUint64(dv, 2, 'export size'), transmissionFlags: dv.getUint16(10) };
    case NBD_INFO_BLOCK_SIZE:
      if (payload.byteLength !== 14) {
        throw nbdProtocolError(`NBD_INFO_BLOCK_SIZE is ${payload.byteLength} bytes, not 14`);
      }
      return checkBlockSizes(dv.getUint32(2), dv.getUint32(6), dv.getUint32(10));
    case NBD_INFO_NAME:
    case NBD_INFO_DESCRIPTION:
      return {
        kind: infoType === NBD_INFO_NAME ? 'name' : 'description',
        text: parseString(payload.subarray(2), 'export name or description'),
      };
    default:
      return { kind: 'unknown', infoType };
  }
}

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** §Size constraints: the MUSTs on advertised block sizes. */
function checkBlockSizes(minimumBytes: number, preferredBytes: number, maximumBytes: number): InfoReply {
  const sizes = `block sizes ${minimumBytes}/${preferredBytes}/${maximumBytes}`;
  if (!isPowerOfTwo(minimumBytes) || minimumBytes > MAX_MINIMUM_BLOCK_BYTES) {
    throw nbdProtocolError(`${sizes}: the minimum is not a power of 2 up to 32 MiB`);
  }
  if (!isPowerOfTwo(preferredBytes) || preferredBytes < Math.max(minimumBytes, 512)) {
    throw nbdProtocolError(`${sizes}: the preferred size is not a power of 2 ≥ max(minimum, 512)`);
  }
  if (maximumBytes < preferredBytes) throw nbdProtocolError(`${sizes}: the maximum is below the preferred size`);
  return { kind: 'block-size', minimumBytes, preferredBytes, maximumBytes };
}

/** §NBD_REP_META_CONTEXT: context id and name. */
export function parseMetaContextReply(payload: Uint8Array): { id: number; name: string } {
  requireLength(payload, 4, 'NBD_REP_META_CONTEXT');
  return { id: view(payload).getUint32(0), name: parseString(payload.subarray(4), 'metadata context name') };
}

/** §NBD_OPT_EXPORT_NAME reply: size, transmission flags (and 124 zero bytes unless NO_ZEROES). */
export function parseExportNameReply(buf: Uint8Array): { sizeBytes: number; transmissionFlags: number } {
  requireLength(buf, 10, 'NBD_OPT_EXPORT_NAME reply');
  const dv = view(buf);
  return { sizeBytes: readUint64(dv, 0, 'export size'), transmissionFlags: dv.getUint16(8) };
}
