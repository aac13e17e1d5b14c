/**
 * The transmission-phase reply parser: a state machine fed from the socket's chunk queue that
 * matches simple replies and structured reply chunks to requests by cookie, in any order, and
 * copies read data straight into each request's destination buffer (one copy per byte).
 */
import type { Extent } from '../disk/types.js';
import type { ByteQueue } from './byte-queue.js';
import {
  MAX_BLOCK_STATUS_BYTES, MAX_ERROR_CHUNK_BYTES, NBD_CMD_BLOCK_STATUS, NBD_CMD_READ, NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_FLAG_ERROR, NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE, NBD_SIMPLE_REPLY_MAGIC, NBD_STRUCTURED_REPLY_MAGIC, SIMPLE_REPLY_BYTES,
  NbdProtocolError, STRUCTURED_HEADER_BYTES, commandName, nbdProtocolError,
} from './protocol.js';
import {
  type ChunkHeader, type ErrorChunk, checkContentRange, parseBlockStatus, parseChunkHeader, parseDataOffset,
  parseErrorChunk, parseOffsetHole, parseSimpleReply,
} from './reply-codec.js';

/** A request sent and not yet answered in full. */
export interface InFlight {
  readonly cookie: number;
  readonly type: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** NBD_CMD_READ: receives the data; exactly lengthBytes long. */
  readonly dest: Uint8Array | undefined;
  /** NBD_CMD_BLOCK_STATUS: the base:allocation extents, once received. */
  extents: Extent[] | undefined;
  /** The first error chunk (or simple reply error) received. */
  error: ErrorChunk | undefined;
  /** NBD_CMD_READ: end of the content received so far while chunks arrive in order. */
  contentEnd: number;
  /** NBD_CMD_READ: [offset, length] pairs of content chunks, kept once they arrive out of order. */
  contentRanges: number[] | undefined;
}

/** What the reader needs from the connection. */
export interface ReplyTarget {
  readonly structuredReplies: boolean;
  readonly baseAllocationId: number | undefined;
  lookup(cookie: number): InFlight | undefined;
  /** The request's reply is complete; `error` is the server's, if any. */
  settle(req: InFlight, error: ErrorChunk | undefined): void;
}

/** Header: waiting for a reply header; DataOffset/Data: inside a read's data; Payload: a whole small chunk. */
type Phase = 'header' | 'data-offset' | 'data' | 'payload';

/** Parses replies from `queue` as far as the bytes go; every violation throws NBD_PROTOCOL. */
export class ReplyReader {
  #phase: Phase = 'header';
  #req: InFlight | undefined;
  #chunk: ChunkHeader | undefined;
  /** 'data': where the next byte goes in #req.dest, how many remain, and whether simple. */
  #destOffset = 0;
  #remaining = 0;
  #simpleData = false;
  /** Bytes of the reply stream consumed, for "where" in messages. */
  #streamOffset = 0;

  constructor(
    private readonly queue: ByteQueue,
    private readonly target: ReplyTarget,
  ) {}

  /** Whether a reply is partly received (so a closed connection truncated it). */
  get midReply(): boolean {
    return this.#phase !== 'header' || this.queue.length > 0;
  }

  /** Where the stream stands, for error messages. */
  describePosition(): string {
    const req = this.#req;
    const inReply = req ? ` in the reply to ${describe(req)}` : '';
    return `at byte ${this.#streamOffset} of the reply stream${inReply}`;
  }

  /**
   * Where the socket may write the next bytes directly: the rest of a read's data when nothing
   * is queued before it and at least `minBytes` of it remain, so that the bulk of every read
   * reply lands in its destination with one copy (the kernel's). Undefined otherwise.
   */
  directTarget(minBytes: number): Uint8Array | undefined {
    if (this.#phase !== 'data' || this.queue.length > 0 || this.#remaining < minBytes) return undefined;
    return (this.#req as InFlight).dest?.subarray(this.#destOffset, this.#destOffset + this.#remaining);
  }

  /** `n` bytes were written into the buffer {@link directTarget} returned. */
  receivedDirect(n: number): void {
    if (this.#phase !== 'data' || n > this.#remaining) throw nbdProtocolError('direct read outside a data phase');
    this.#streamOffset += n;
    this.#destOffset += n;
    this.#remaining -= n;
    if (this.#remaining === 0) this.feed();
  }

  /** Consumes every complete piece of reply in the queue; a violation throws NBD_PROTOCOL saying where. */
  feed(): void {
    try {
      this.#feed();
    } catch (err) {
      throw err instanceof NbdProtocolError ? nbdProtocolError(`${err.detail} ${this.describePosition()}`) : err;
    }
  }

  #feed(): void {
    for (;;) {
      const progressed =
        this.#phase === 'header' ? this.#readHeader()
        : this.#phase === 'data' ? this.#readData()
        : this.#phase === 'data-offset' ? this.#readDataOffset()
        : this.#readPayload();
      if (!progressed) return;
    }
  }

  #take(n: number): Buffer {
    this.#streamOffset += n;
    return this.queue.take(n);
  }

  #violation(what: string): Error {
    return nbdProtocolError(what);
  }

  #lookup(cookie: number): InFlight {
    const req = this.target.lookup(cookie);
    if (!req) throw this.#violation(`reply for unknown cookie 0x${cookie.toString(16)}`);
    return req;
  }

  #readHeader(): boolean {
    if (this.queue.length < 4) return false;
    const magic = this.queue.peekUint32();
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      if (this.queue.length < SIMPLE_REPLY_BYTES) return false;
      this.#startSimple(parseSimpleReply(this.#take(SIMPLE_REPLY_BYTES)));
      return true;
    }
    if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
      if (!this.target.structuredReplies) throw this.#violation('structured reply chunk without negotiation');
      if (this.queue.length < STRUCTURED_HEADER_BYTES) return false;
      const header = parseChunkHeader(this.#take(STRUCTURED_HEADER_BYTES));
      this.#startChunk(this.#lookup(header.cookie), header);
      return true;
    }
    throw this.#violation(`bad reply magic 0x${magic.toString(16).padStart(8, '0')}`);
  }

  /** §Simple reply message: a read's data follows only on success. */
  #startSimple(reply: { errno: number; cookie: number }): void {
    const req = this.#lookup(reply.cookie);
    this.#req = req;
    if (req.type === NBD_CMD_READ && reply.errno === 0) {
      if (this.target.structuredReplies) {
        throw this.#violation('simple reply with data to a read after structured replies were negotiated');
      }
      this.#enterData(0, req.lengthBytes, true);
      return;
    }
    if (req.type === NBD_CMD_BLOCK_STATUS && reply.errno === 0) {
      throw this.#violation('simple reply without extents to a block status request');
    }
    if (reply.errno !== 0) req.error = { errno: reply.errno, message: '', offsetBytes: undefined };
    this.#finish(req);
  }

  /** §Structured reply types: checks the type and length before any payload is read. */
  #startChunk(req: InFlight, header: ChunkHeader): void {
    this.#req = req;
    this.#chunk = header;
    const { type, lengthBytes } = header;
    const isRead = req.type === NBD_CMD_READ;
    if (type === NBD_REPLY_TYPE_NONE) {
      if (lengthBytes !== 0 || !(header.flags & NBD_REPLY_FLAG_DONE)) throw this.#violation('malformed NONE chunk');
      this.#endChunk();
    } else if (type === NBD_REPLY_TYPE_OFFSET_DATA && isRead) {
      if (lengthBytes < 9 || lengthBytes - 8 > req.lengthBytes) {
        throw this.#violation(`data chunk of bad length ${lengthBytes}`);
      }
      this.#phase = 'data-offset';
    } else if (type === NBD_REPLY_TYPE_OFFSET_HOLE && isRead) {
      if (lengthBytes !== 12) throw this.#violation(`hole chunk of length ${lengthBytes}, not 12`);
      this.#phase = 'payload';
    } else if (type === NBD_REPLY_TYPE_BLOCK_STATUS && req.type === NBD_CMD_BLOCK_STATUS) {
      if (lengthBytes > MAX_BLOCK_STATUS_BYTES) {
        throw this.#violation(`oversize block status chunk (${lengthBytes} bytes)`);
      }
      this.#phase = 'payload';
    } else if (type & NBD_REPLY_TYPE_FLAG_ERROR) {
      if (lengthBytes > MAX_ERROR_CHUNK_BYTES) throw this.#violation(`oversize error chunk (${lengthBytes} bytes)`);
      this.#phase = 'payload';
    } else {
      throw this.#violation(`unexpected chunk type ${type}`);
    }
  }

  #readDataOffset(): boolean {
    if (this.queue.length < 8) return false;
    const req = this.#req as InFlight;
    const offsetBytes = parseDataOffset(this.#take(8));
    const lengthBytes = (this.#chunk as ChunkHeader).lengthBytes - 8;
    this.#checkContent(req, offsetBytes, lengthBytes, 'data chunk');
    this.#enterData(offsetBytes - req.offsetBytes, lengthBytes, false);
    return true;
  }

  #enterData(destOffset: number, lengthBytes: number, simple: boolean): void {
    this.#destOffset = destOffset;
    this.#remaining = lengthBytes;
    this.#simpleData = simple;
    this.#phase = 'data';
  }

  #readData(): boolean {
    const req = this.#req as InFlight;
    const moved = this.queue.copyInto(req.dest as Uint8Array, this.#destOffset, this.#remaining);
    this.#streamOffset += moved;
    this.#destOffset += moved;
    this.#remaining -= moved;
    if (this.#remaining > 0) return false;
    if (this.#simpleData) this.#finish(req);
    else this.#endChunk();
    return true;
  }

  #readPayload(): boolean {
    const header = this.#chunk as ChunkHeader;
    if (this.queue.length < header.lengthBytes) return false;
    const payload = this.#take(header.lengthBytes);
    const req = this.#req as InFlight;
    if (header.type === NBD_REPLY_TYPE_OFFSET_HOLE) this.#applyHole(req, payload);
    else if (header.type === NBD_REPLY_TYPE_BLOCK_STATUS) this.#applyBlockStatus(req, payload);
    else this.#applyError(req, parseErrorChunk(payload, header.type));
    this.#endChunk();
    return true;
  }

  #applyHole(req: InFlight, payload: Uint8Array): void {
    const hole = parseOffsetHole(payload);
    this.#checkContent(req, hole.offsetBytes, hole.lengthBytes, 'hole chunk');
    const start = hole.offsetBytes - req.offsetBytes;
    (req.dest as Uint8Array).fill(0, start, start + hole.lengthBytes);
  }

  #applyBlockStatus(req: InFlight, payload: Uint8Array): void {
    const status = parseBlockStatus(payload, req);
    if (status.contextId !== this.target.baseAllocationId) {
      throw this.#violation(`block status for context ${status.contextId}, which was not selected`);
    }
    if (req.extents) throw this.#violation('two block status chunks for one context');
    req.extents = status.extents;
  }

  #applyError(req: InFlight, error: ErrorChunk): void {
    if (error.offsetBytes !== undefined) checkContentRange(error.offsetBytes, 1, req, 'error offset');
    req.error ??= error;
  }

  /** Records a content chunk; keeps ranges only once chunks arrive out of order. */
  #checkContent(req: InFlight, offsetBytes: number, lengthBytes: number, what: string): void {
    checkContentRange(offsetBytes, lengthBytes, req, what);
    if (!req.contentRanges && offsetBytes === req.contentEnd) {
      req.contentEnd += lengthBytes;
      return;
    }
    req.contentRanges ??= req.contentEnd > req.offsetBytes ? [req.offsetBytes, req.contentEnd - req.offsetBytes] : [];
    req.contentRanges.push(offsetBytes, lengthBytes);
  }

  #endChunk(): void {
    const header = this.#chunk as ChunkHeader;
    if (header.flags & NBD_REPLY_FLAG_DONE) this.#finish(this.#req as InFlight);
    this.#phase = 'header';
    this.#req = undefined;
  }

  /** The reply is complete: check that a successful one said everything it must. */
  #finish(req: InFlight): void {
    this.#phase = 'header';
    if (!req.error && req.type === NBD_CMD_READ && !this.#simpleData && !isCovered(req)) {
      throw this.#violation('successful read reply that does not cover the request exactly');
    }
    if (!req.error && req.type === NBD_CMD_BLOCK_STATUS && !req.extents) {
      throw this.#violation('successful block status reply without base:allocation extents');
    }
    this.#simpleData = false;
    this.#req = undefined;
    this.target.settle(req, req.error);
  }
}

/** Whether a read's content chunks cover the request exactly, without gaps or overlaps. */
function isCovered(req: InFlight): boolean {
  const end = req.offsetBytes + req.lengthBytes;
  const ranges = req.contentRanges;
  if (!ranges) return req.contentEnd === end;
  const order = Array.from({ length: ranges.length / 2 }, (_, i) => i).sort(
    (a, b) => (ranges[2 * a] as number) - (ranges[2 * b] as number),
  );
  let at = req.offsetBytes;
  for (const i of order) {
    if (ranges[2 * i] !== at) return false;
    at += ranges[2 * i + 1] as number;
  }
  return at === end;
}

/** "read 4096+512 (cookie 7)" */
function describe(req: InFlight): string {
  return `${commandName(req.type)} ${req.offsetBytes}+${req.lengthBytes} (cookie ${req.cookie})`;
}
