/** The export as the client sees it: transmission flags decoded, block sizes settled. */
import type { BlockSizes, Negotiated } from './handshake.js';
import {
  DEFAULT_MAX_PAYLOAD_BYTES, NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_READ_ONLY, NBD_FLAG_ROTATIONAL, NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES,
} from './protocol.js';

/** What the server told us about the export, decoded. */
export interface NbdExportInfo {
  readonly exportName: string;
  readonly sizeBytes: number;
  /** The raw transmission flags (proto.md §Transmission flags). */
  readonly transmissionFlags: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canFua: boolean;
  readonly canTrim: boolean;
  readonly canWriteZeroes: boolean;
  readonly canFastZero: boolean;
  readonly canMultiConn: boolean;
  readonly canDf: boolean;
  readonly rotational: boolean;
  readonly structuredReplies: boolean;
  /** base:allocation was selected: extents() gives real information. */
  readonly blockStatus: boolean;
  /** Advertised sizes, or the defaults of proto.md §Size constraints (1, 4096, 32 MiB). */
  readonly blockSizes: BlockSizes;
  readonly blockSizesAdvertised: boolean;
  /** The largest read or write this client sends as one request. */
  readonly maxRequestBytes: number;
}

/** Throws RangeError unless `n` is a positive safe integer. */
export function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer, not ${n}`);
  return n;
}

/** Decodes the transmission flags and settles the block sizes this client will use. */
export function exportInfo(n: Negotiated, maxRequestBytes = DEFAULT_MAX_PAYLOAD_BYTES): NbdExportInfo {
  const has = (bit: number): boolean => (n.transmissionFlags & bit) !== 0;
  const blockSizes = n.blockSizes ?? { minimumBytes: 1, preferredBytes: 4096, maximumBytes: DEFAULT_MAX_PAYLOAD_BYTES };
  const wanted = positive(maxRequestBytes, 'maxRequestBytes');
  const cap = Math.min(blockSizes.maximumBytes, DEFAULT_MAX_PAYLOAD_BYTES, wanted);
  const unit = blockSizes.preferredBytes <= cap ? blockSizes.preferredBytes : blockSizes.minimumBytes;
  return {
    exportName: n.exportName,
    sizeBytes: n.sizeBytes,
    transmissionFlags: n.transmissionFlags,
    readOnly: has(NBD_FLAG_READ_ONLY),
    canFlush: has(NBD_FLAG_SEND_FLUSH),
    canFua: has(NBD_FLAG_SEND_FUA),
    canTrim: has(NBD_FLAG_SEND_TRIM),
    canWriteZeroes: has(NBD_FLAG_SEND_WRITE_ZEROES),
    canFastZero: has(NBD_FLAG_SEND_WRITE_ZEROES) && has(NBD_FLAG_SEND_FAST_ZERO),
    canMultiConn: has(NBD_FLAG_CAN_MULTI_CONN),
    canDf: has(NBD_FLAG_SEND_DF),
    rotational: has(NBD_FLAG_ROTATIONAL),
    structuredReplies: n.structuredReplies,
    blockStatus: n.baseAllocationId !== undefined,
    blockSizes,
    blockSizesAdvertised: n.blockSizes !== undefined,
    maxRequestBytes: Math.max(blockSizes.minimumBytes, cap - (cap % unit)),
  };
}
