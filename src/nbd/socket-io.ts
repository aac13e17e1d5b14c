/**
 * Socket plumbing for the handshake: connecting to a unix socket, reading exact byte counts
 * while options are negotiated, and hanging up politely when the negotiation fails.
 */
import { type Socket, createConnection } from 'node:net';
import { SparsifyError, cancelledError, isSparsifyError } from '../errors.js';
import { ByteQueue } from './byte-queue.js';
import type { HandshakeIo } from './handshake.js';
import { encodeOption } from './option-codec.js';
import { NBD_OPT_ABORT, nbdProtocolError } from './protocol.js';
import { CopyingRoute, SocketReads } from './socket-reads.js';

/** How long a refused handshake waits for the server to hang up after NBD_OPT_ABORT. */
const ABORT_TIMEOUT_MS = 1000;

/** A connected socket whose reads go where `reads.route` says; until changed, copied into `route.queue`. */
export interface ConnectedSocket {
  readonly socket: Socket;
  readonly reads: SocketReads;
  readonly route: CopyingRoute;
}

/** Connects to a unix socket; TOOL_FAILED with the errno (ENOENT, ECONNREFUSED) as `cause` when nobody listens. */
export function connectUnix(socketPath: string, signal: AbortSignal | undefined): Promise<ConnectedSocket> {
  return new Promise((resolve, reject) => {
    const route = new CopyingRoute(new ByteQueue());
    const reads = new SocketReads(route);
    const socket = createConnection({ path: socketPath, onread: reads.onread });
    const onAbort = (): void => {
      socket.destroy();
      reject(cancelledError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve({ socket, reads, route });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      const why = err.code ?? err.message;
      reject(
        new SparsifyError('TOOL_FAILED', `cannot connect to the NBD server at ${socketPath}: ${why}`, {
          cause: err,
          hint: 'is the NBD server (qemu-storage-daemon, qemu-nbd) running?',
        }),
      );
    });
  });
}

/** HandshakeIo over a connected socket; detach() hands the socket and leftover bytes on. */
export class SocketHandshakeIo implements HandshakeIo {
  readonly queue: ByteQueue;
  readonly socket: Socket;
  readonly #route: CopyingRoute;
  #waiter: { n: number; what: string; resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | undefined;
  #cancelled = false;
  /** Why the connection ended during the handshake, once it has. */
  #lost: string | undefined;
  #received = 0;

  readonly #onData = (): void => {
    this.#received = this.#consumed + this.queue.length;
    this.#wake();
  };
  /** Bytes taken from the queue so far. */
  #consumed = 0;
  readonly #onEnd = (): void => this.#fail(undefined);
  readonly #onError = (err: NodeJS.ErrnoException): void => this.#fail(err);
  readonly #onAbort = (): void => {
    this.#cancelled = true;
    this.socket.destroy();
    this.#wake();
  };

  constructor(
    connected: ConnectedSocket,
    private readonly signal: AbortSignal | undefined,
  ) {
    const socket = connected.socket;
    this.socket = socket;
    this.#route = connected.route;
    this.queue = connected.route.queue;
    this.#route.onData = this.#onData;
    this.#onData();
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onError);
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Resolves with exactly `n` bytes (a view when they sit in one socket chunk). */
  read(n: number, what: string): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.#waiter = { n, what, resolve, reject };
      this.#wake();
    });
  }

  write(bytes: Uint8Array): void {
    if (!this.#cancelled && this.#lost === undefined) this.socket.write(bytes);
  }

  /** Stops listening; the socket's later events belong to the next owner. */
  detach(): void {
    this.#route.onData = () => {};
    this.socket.off('end', this.#onEnd);
    this.socket.off('close', this.#onEnd);
    this.socket.off('error', this.#onError);
    this.signal?.removeEventListener('abort', this.#onAbort);
  }

  /** After a failed handshake: NBD_OPT_ABORT when the server is still talking sensibly, then close. */
  async abandon(err: unknown): Promise<void> {
    this.detach();
    const soft = !this.#cancelled && this.#lost === undefined && !isSparsifyError(err, 'NBD_PROTOCOL', 'CANCELLED');
    if (soft && !this.socket.destroyed) {
      const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
      this.socket.on('error', () => {});
      this.socket.end(encodeOption(NBD_OPT_ABORT));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, ABORT_TIMEOUT_MS)))]);
      clearTimeout(timer);
    }
    this.socket.destroy();
  }

  #fail(err: NodeJS.ErrnoException | undefined): void {
    this.#lost ??= err ? `connection error (${err.code ?? err.message})` : 'connection closed';
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    if (!w) return;
    if (this.queue.length >= w.n) {
      this.#waiter = undefined;
      this.#consumed += w.n;
      w.resolve(this.queue.take(w.n));
    } else if (this.#cancelled || this.#lost !== undefined) {
      this.#waiter = undefined;
      const where = `during the handshake, after ${this.#received} bytes, while reading ${w.what}`;
      w.reject(this.#cancelled ? cancelledError(this.signal) : nbdProtocolError(`${this.#lost} ${where}`));
    }
  }
}
