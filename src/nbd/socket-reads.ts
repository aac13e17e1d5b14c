/**
 * Socket reads into buffers we choose (node's `net` onread option) instead of a new 64 KiB
 * Buffer per read: the reply parser can hand out the rest of a read's destination, so that the
 * bulk of the data is copied once, by the kernel, and nothing is allocated per read. Profiled
 * on a 3.5 GiB copy, the per-read Buffers cost a third of the client's CPU in allocation,
 * page faults and garbage collection, and the copy out of them another tenth.
 */
import type { ByteQueue } from './byte-queue.js';

/** Who receives the socket's bytes, and where the next read lands. */
export interface ReadRoute {
  /** The buffer the next read fills (called after every read, before the next one). */
  nextBuffer(): Uint8Array;
  /** `n` bytes were read into the start of `buf`, the buffer {@link nextBuffer} gave. */
  onRead(n: number, buf: Uint8Array): void;
}

/** Bytes of the reusable buffer for everything that is not read straight into a destination. */
export const SCRATCH_BYTES = 64 * 1024;

/** The route of a socket: set once per phase (handshake, then transmission). */
export class SocketReads {
  #route: ReadRoute;

  constructor(initial: ReadRoute) {
    this.#route = initial;
  }

  set route(route: ReadRoute) {
    this.#route = route;
  }

  /** The `onread` option for `net.createConnection`. */
  get onread(): { buffer: () => Uint8Array; callback: (n: number, buf: Uint8Array) => boolean } {
    return {
      buffer: () => this.#route.nextBuffer(),
      callback: (n, buf) => {
        this.#route.onRead(n, buf);
        return true;
      },
    };
  }
}

/** The handshake's route: appends a copy of every read to `queue`, then calls `onData`. */
export class CopyingRoute implements ReadRoute {
  readonly #scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  onData: () => void = () => {};

  constructor(readonly queue: ByteQueue) {}

  nextBuffer(): Uint8Array {
    return this.#scratch;
  }

  onRead(n: number, buf: Uint8Array): void {
    this.queue.push(Buffer.from(buf.subarray(0, n)));
    this.onData();
  }
}
