/**
 * The fixed newstyle handshake (proto.md §Fixed newstyle negotiation): structured replies,
 * the base:allocation metadata context, then NBD_OPT_GO with NBD_INFO_BLOCK_SIZE (falling back
 * to NBD_OPT_EXPORT_NAME on servers without NBD_OPT_GO).
 */
import { SparsifyError } from '../errors.js';
import {
  encodeClientFlags, encodeExportNameData, encodeGoData, encodeMetaContextData, encodeOption,
  parseExportNameReply, parseGreeting, parseInfoReply, parseMetaContextReply, parseOptionReplyHeader,
} from './option-codec.js';
import {
  BASE_ALLOCATION, GREETING_BYTES, NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS, NBD_FLAG_NO_ZEROES, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_FLAG_ERROR, NBD_REP_INFO, NBD_REP_META_CONTEXT,
  OPTION_REPLY_HEADER_BYTES, nbdProtocolError, optionErrorName, parseString,
} from './protocol.js';

/** The bytes the handshake reads and writes; a socket in production, a script in tests. */
export interface HandshakeIo {
  /** Resolves with exactly `n` bytes; rejects when the connection ends first. */
  read(n: number, what: string): Promise<Uint8Array>;
  write(bytes: Uint8Array): void;
}

/** The block size constraints of an export (proto.md §Size constraints). */
export interface BlockSizes {
  readonly minimumBytes: number;
  readonly preferredBytes: number;
  readonly maximumBytes: number;
}

/** What the handshake agreed on. */
export interface Negotiated {
  readonly exportName: string;
  readonly sizeBytes: number;
  readonly transmissionFlags: number;
  readonly structuredReplies: boolean;
  /** The id of base:allocation, when the server selected it. */
  readonly baseAllocationId: number | undefined;
  /** Undefined when the server advertised none (then the defaults of §Size constraints apply). */
  readonly blockSizes: BlockSizes | undefined;
}

interface OptionReply {
  readonly replyType: number;
  readonly payload: Uint8Array;
}

/** Runs the whole handshake and returns what was agreed; throws SparsifyError on refusal. */
export async function negotiate(io: HandshakeIo, exportName: string): Promise<Negotiated> {
  const { handshakeFlags } = parseGreeting(await io.read(GREETING_BYTES, 'the greeting'));
  if (!(handshakeFlags & NBD_FLAG_FIXED_NEWSTYLE)) {
    throw new SparsifyError('UNSUPPORTED', 'the NBD server does not support fixed newstyle negotiation', {
      hint: 'use a newer NBD server (qemu-nbd, qemu-storage-daemon, nbdkit)',
    });
  }
  const noZeroes = (handshakeFlags & NBD_FLAG_NO_ZEROES) !== 0;
  io.write(encodeClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0)));
  const structuredReplies = await requestStructuredReplies(io);
  const baseAllocationId = structuredReplies ? await selectBaseAllocation(io, exportName) : undefined;
  const go = (await requestGo(io, exportName)) ?? (await exportNameFallback(io, exportName, noZeroes));
  const transmissionFlags = go.transmissionFlags & NBD_FLAG_HAS_FLAGS ? go.transmissionFlags : 0;
  return { exportName, structuredReplies, baseAllocationId, ...go, transmissionFlags };
}

async function readOptionReply(io: HandshakeIo, option: number): Promise<OptionReply> {
  const what = `the reply to option ${option}`;
  const header = parseOptionReplyHeader(await io.read(OPTION_REPLY_HEADER_BYTES, what), option);
  const payload = header.lengthBytes ? await io.read(header.lengthBytes, what) : new Uint8Array(0);
  return { replyType: header.replyType, payload };
}

const isError = (replyType: number): boolean => (replyType & NBD_REP_FLAG_ERROR) !== 0;

/** §NBD_OPT_STRUCTURED_REPLY: ACK, or NBD_REP_ERR_UNSUP (simple replies only). */
async function requestStructuredReplies(io: HandshakeIo): Promise<boolean> {
  io.write(encodeOption(NBD_OPT_STRUCTURED_REPLY));
  const reply = await readOptionReply(io, NBD_OPT_STRUCTURED_REPLY);
  if (reply.replyType === NBD_REP_ACK) return true;
  if (isError(reply.replyType)) return failUnlessOptional(reply, 'NBD_OPT_STRUCTURED_REPLY', '') ?? false;
  throw nbdProtocolError(`unexpected reply type ${reply.replyType} to NBD_OPT_STRUCTURED_REPLY`);
}

/** §NBD_OPT_SET_META_CONTEXT: the id of base:allocation, or undefined when not selected. */
async function selectBaseAllocation(io: HandshakeIo, exportName: string): Promise<number | undefined> {
  io.write(encodeOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData(exportName, [BASE_ALLOCATION])));
  let id: number | undefined;
  for (;;) {
    const reply = await readOptionReply(io, NBD_OPT_SET_META_CONTEXT);
    if (reply.replyType === NBD_REP_ACK) return id;
    if (isError(reply.replyType)) return failUnlessOptional(reply, 'NBD_OPT_SET_META_CONTEXT', exportName);
    if (reply.replyType !== NBD_REP_META_CONTEXT) {
      throw nbdProtocolError(`unexpected reply type ${reply.replyType} to NBD_OPT_SET_META_CONTEXT`);
    }
    const context = parseMetaContextReply(reply.payload);
    if (context.name === BASE_ALLOCATION) id = context.id;
  }
}

/** An optional feature the server refused: fine unless the refusal says the session is over. */
function failUnlessOptional(reply: OptionReply, optionName: string, exportName: string): undefined {
  const fatal = [NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_TLS_REQD, NBD_REP_ERR_SHUTDOWN];
  if (fatal.includes(reply.replyType)) throw optionError(reply, optionName, exportName);
  return undefined;
}

type ExportFacts = Pick<Negotiated, 'sizeBytes' | 'transmissionFlags' | 'blockSizes'>;

/** §NBD_OPT_GO: NBD_REP_INFO replies then ACK; undefined when the server lacks NBD_OPT_GO. */
async function requestGo(io: HandshakeIo, exportName: string): Promise<ExportFacts | undefined> {
  io.write(encodeOption(NBD_OPT_GO, encodeGoData(exportName, [NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE])));
  let exportInfo: { sizeBytes: number; transmissionFlags: number } | undefined;
  let blockSizes: BlockSizes | undefined;
  for (;;) {
    const reply = await readOptionReply(io, NBD_OPT_GO);
    if (reply.replyType === NBD_REP_ACK) {
      if (!exportInfo) throw nbdProtocolError('NBD_OPT_GO succeeded without NBD_INFO_EXPORT');
      return { ...exportInfo, blockSizes };
    }
    if (reply.replyType === NBD_REP_ERR_UNSUP) return undefined;
    if (isError(reply.replyType)) throw optionError(reply, 'NBD_OPT_GO', exportName);
    if (reply.replyType !== NBD_REP_INFO) {
      throw nbdProtocolError(`unexpected reply type ${reply.replyType} to NBD_OPT_GO`);
    }
    const info = parseInfoReply(reply.payload);
    if (info.kind === 'export') exportInfo = { sizeBytes: info.sizeBytes, transmissionFlags: info.transmissionFlags };
    if (info.kind === 'block-size') {
      const { minimumBytes, preferredBytes, maximumBytes } = info;
      blockSizes = { minimumBytes, preferredBytes, maximumBytes };
    }
  }
}

/** §NBD_OPT_EXPORT_NAME: no reply header, and the server hangs up on an unknown name. */
async function exportNameFallback(io: HandshakeIo, exportName: string, noZeroes: boolean): Promise<ExportFacts> {
  io.write(encodeOption(NBD_OPT_EXPORT_NAME, encodeExportNameData(exportName)));
  const reply = parseExportNameReply(await io.read(10, `the reply to NBD_OPT_EXPORT_NAME "${exportName}"`));
  if (!noZeroes) await io.read(124, 'the zero padding after NBD_OPT_EXPORT_NAME');
  return { ...reply, blockSizes: undefined };
}

/** The SparsifyError for an option the server refused, with its message when it sent one. */
function optionError(reply: OptionReply, optionName: string, exportName: string): SparsifyError {
  const said = reply.payload.byteLength ? `: ${parseString(reply.payload, 'error message')}` : '';
  if (reply.replyType === NBD_REP_ERR_UNKNOWN) {
    return new SparsifyError('NOT_FOUND', `the NBD server has no export named "${exportName}"${said}`, {
      hint: 'check the export name the server was started with',
    });
  }
  const what = `the NBD server refused ${optionName} for export "${exportName}": ${optionErrorName(reply.replyType)}`;
  return new SparsifyError('UNSUPPORTED', `${what}${said}`);
}
