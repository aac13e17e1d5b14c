/**
 * One NBD connection in the transmission phase: sends requests (header and payload in one
 * corked write), keeps the requests in flight by cookie, and feeds the reply parser from the
 * socket. A protocol violation or a lost connection fails every request in flight and closes
 * the socket; no exception ever leaves an event handler.
 */
import type { Socket } from 'node:net';
import { SparsifyError } from '../errors.js';
import type { ByteQueue } from './byte-queue.js';
import type { Negotiated } from './handshake.js';
import { NBD_CMD_DISC, NBD_ESHUTDOWN, REQUEST_HEADER_BYTES, nbdProtocolError } from './protocol.js';
import { type InFlight, type ReplyTarget, ReplyReader } from './reply-reader.js';
import { type ErrorChunk, encodeRequestHeader } from './reply-codec.js';
import { NbdRequestError } from './request-error.js';
import { type ReadRoute, SCRATCH_BYTES, type SocketReads } from './socket-reads.js';

/** How long close() waits for the server to hang up after NBD_CMD_DISC before dropping the socket. */
const DISCONNECT_TIMEOUT_MS = 5000;

/** One request to send. */
export interface Command {
  readonly type: number;
  readonly flags: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** NBD_CMD_WRITE: the data, sent right after the header. */
  readonly payload?: Uint8Array | undefined;
  /** NBD_CMD_READ: where the data goes; exactly lengthBytes long. */
  readonly dest?: Uint8Array | undefined;
}

interface Pending extends InFlight {
  resolve(req: InFlight): void;
  reject(err: Error): void;
}

/** The transmission phase of one socket; used by NbdClient, which adds limits and splitting. */
export class NbdConnection implements ReplyTarget, ReadRoute {
  readonly structuredReplies: boolean;
  readonly baseAllocationId: number | undefined;
  /** Called once when the connection dies (protocol violation, lost socket, fail()). */
  onFatal: ((err: Error) => void) | undefined;
  /** Called on an ESHUTDOWN reply: the client must disconnect (proto.md §Terminating the transmission phase). */
  onServerShutdown: (() => void) | undefined;

  readonly #socket: Socket;
  readonly #reader: ReplyReader;
  readonly #queue: ByteQueue;
  readonly #pending = new Map<number, Pending>();
  readonly #closed: Promise<void>;
  readonly #scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  /** The destination slice handed to the socket for the next read, if any. */
  #direct: Uint8Array | undefined;
  #nextCookie = 1;
  #fatal: Error | undefined;
  #disconnecting = false;

  constructor(socket: Socket, reads: SocketReads, queue: ByteQueue, negotiated: Negotiated) {
    this.structuredReplies = negotiated.structuredReplies;
    this.baseAllocationId = negotiated.baseAllocationId;
    this.#socket = socket;
    this.#queue = queue;
    this.#reader = new ReplyReader(queue, this);
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
    reads.route = this;
    socket.on('error', (err: NodeJS.ErrnoException) => this.#onLost(`connection error (${err.code ?? err.message})`));
    socket.on('end', () => this.#onLost('connection closed by the server'));
    socket.on('close', () => this.#onLost('connection closed'));
    if (queue.length > 0) this.#parse();
  }

  /** Requests sent and not yet answered. */
  get inFlightCount(): number {
    return this.#pending.size;
  }

  /** Why the connection is unusable, if it is. */
  get failure(): Error | undefined {
    return this.#fatal;
  }

  /** Sends one request; resolves when its whole reply has arrived, rejects with NbdRequestError on a server error. */
  send(cmd: Command): Promise<InFlight> {
    if (this.#fatal) return Promise.reject(this.#fatal);
    const cookie = this.#allocateCookie();
    const { type, offsetBytes, lengthBytes, dest } = cmd;
    return new Promise<InFlight>((resolve, reject) => {
      const req: Pending = {
        cookie, type, offsetBytes, lengthBytes, dest, resolve, reject,
        extents: undefined, error: undefined, contentEnd: offsetBytes, contentRanges: undefined,
      };
      this.#pending.set(cookie, req);
      this.#write(req, cmd.flags, cmd.payload);
    });
  }

  /** ReplyTarget: the request a cookie belongs to. */
  lookup(cookie: number): InFlight | undefined {
    return this.#pending.get(cookie);
  }

  /** ReplyTarget: a reply is complete. */
  settle(req: InFlight, error: ErrorChunk | undefined): void {
    const pending = req as Pending;
    this.#pending.delete(req.cookie);
    if (!error) {
      pending.resolve(req);
      return;
    }
    pending.reject(new NbdRequestError(req, error.errno, error.message, error.offsetBytes));
    if (error.errno === NBD_ESHUTDOWN) this.onServerShutdown?.();
  }

  /** Ends the connection with `err`: every request in flight rejects with it; idempotent. */
  fail(err: Error): void {
    if (this.#fatal) return;
    this.#fatal = err;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#queue.clear();
    this.#socket.destroy();
    for (const req of pending) req.reject(err);
    this.onFatal?.(err);
  }

  /** Soft disconnect (NBD_CMD_DISC) when nothing is in flight, then waits for the socket to close. */
  async disconnect(): Promise<void> {
    if (!this.#fatal && !this.#disconnecting && this.#pending.size === 0) {
      this.#disconnecting = true;
      const header = Buffer.alloc(REQUEST_HEADER_BYTES);
      encodeRequestHeader(header, 0, { flags: 0, type: NBD_CMD_DISC, cookie: 0, offsetBytes: 0, lengthBytes: 0 });
      this.#socket.end(header);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, DISCONNECT_TIMEOUT_MS)));
    await Promise.race([this.#closed, timeout]);
    clearTimeout(timer);
    this.fail(new SparsifyError('INTERNAL', 'the NBD connection is closed'));
  }

  #allocateCookie(): number {
    let cookie = this.#nextCookie;
    while (this.#pending.has(cookie)) cookie = (cookie + 1) >>> 0 || 1;
    this.#nextCookie = (cookie + 1) >>> 0 || 1;
    return cookie;
  }

  #write(req: InFlight, flags: number, payload: Uint8Array | undefined): void {
    const header = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);
    encodeRequestHeader(header, 0, { ...req, flags });
    if (!payload) {
      this.#socket.write(header);
      return;
    }
    this.#socket.cork();
    this.#socket.write(header);
    this.#socket.write(payload);
    this.#socket.uncork();
  }

  /**
   * ReadRoute: the rest of a read's data when the reply parser is inside one, else the scratch
   * buffer. Below SCRATCH_BYTES the scratch buffer wins: one read then takes the rest of the
   * data and the next replies' headers together.
   */
  nextBuffer(): Uint8Array {
    this.#direct = this.#fatal ? undefined : this.#reader.directTarget(SCRATCH_BYTES);
    return this.#direct ?? this.#scratch;
  }

  /** ReadRoute: bytes from the socket, either in a destination or in a borrowed buffer. */
  onRead(n: number, buf: Uint8Array): void {
    if (this.#fatal) return;
    if (buf === this.#direct) {
      this.#parse(() => this.#reader.receivedDirect(n));
      return;
    }
    // The buffer is reused for the next read: parse what we can, and copy only what is left.
    this.#queue.push(Buffer.from(buf.buffer, buf.byteOffset, n));
    this.#parse(() => this.#reader.feed());
    this.#queue.ownNewest();
  }

  #parse(step: () => void = () => this.#reader.feed()): void {
    try {
      step();
    } catch (err) {
      this.fail(err instanceof SparsifyError ? err : nbdProtocolError(`unexpected parser failure: ${String(err)}`));
    }
  }

  /** The socket ended or broke: fine after our NBD_CMD_DISC, a violation otherwise. */
  #onLost(what: string): void {
    if (this.#fatal) return;
    if (this.#disconnecting && this.#pending.size === 0) {
      this.fail(new SparsifyError('INTERNAL', 'the NBD connection is closed'));
      return;
    }
    const truncated = this.#reader.midReply ? ', truncating a reply' : '';
    const inFlight = `${this.#pending.size} request(s) in flight`;
    this.fail(nbdProtocolError(`${what} with ${inFlight}${truncated}, ${this.#reader.describePosition()}`));
  }
}
