/**
 * The NBD client: a BlockDevice over one NBD connection on a unix socket. Many requests are in
 * flight at once (replies matched by cookie, in any order); reads and writes larger than the
 * server's maximum payload are split. Byte offsets are `number`, exact up to 2^53 (8 PiB).
 */
import type { BlockDevice, Extent } from '../disk/types.js';
import { SparsifyError, cancelledError, throwIfCancelled } from '../errors.js';
import { once } from '../util/async-stack.js';
import { type Command, NbdConnection } from './connection.js';
import { exportInfo, type NbdExportInfo, positive } from './export-info.js';
import { type Negotiated, negotiate } from './handshake.js';
import { InFlightLimit } from './in-flight-limit.js';
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM,
  NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_ENOTSUP, NBD_EPERM, commandName,
} from './protocol.js';
import type { InFlight } from './reply-reader.js';
import { NbdRequestError } from './request-error.js';
import { SocketHandshakeIo, connectUnix } from './socket-io.js';

export type { NbdExportInfo } from './export-info.js';
export type { BlockSizes } from './handshake.js';
export { NbdRequestError } from './request-error.js';

/** Options of {@link openNbdClient}. */
export interface NbdClientOptions {
  readonly socketPath: string;
  /** The export to open; '' (the default) is the server's default export. */
  readonly exportName?: string;
  /** Aborting fails every pending request with CANCELLED and closes the connection. */
  readonly signal?: AbortSignal;
  /** Requests in flight at most (default 64). */
  readonly maxInFlight?: number;
  /** Read and write payload bytes in flight at most (default 128 MiB). */
  readonly maxInFlightBytes?: number;
  /** The largest read or write sent as one request (default and ceiling: the server's maximum, at most 32 MiB). */
  readonly maxRequestBytes?: number;
}

/** Options of {@link NbdClient.writeZeroes}. */
export interface WriteZeroesOptions {
  /** NBD_CMD_FLAG_FAST_ZERO: fail with ENOTSUP (code UNSUPPORTED) unless zeroing is faster than writing. */
  readonly fastZero?: boolean;
}

type PieceFn = (offsetBytes: number, lengthBytes: number) => Promise<unknown>;

const DEFAULT_MAX_IN_FLIGHT = 64;
const DEFAULT_MAX_IN_FLIGHT_BYTES = 128 * 2 ** 20;
/** The zeros written where the server cannot write zeroes (a multiple of any minimum block size). */
const ZERO_BUFFER_BYTES = 4 * 2 ** 20;
/** Our cap on the effect length of one write-zeroes, trim or block-status (a multiple of any minimum block size). */
const MAX_EFFECT_BYTES = 2 ** 30;

/** Connects, negotiates, and returns a client ready for I/O; the caller closes it (`await using`). */
export async function openNbdClient(opts: NbdClientOptions): Promise<NbdClient> {
  throwIfCancelled(opts.signal);
  const connected = await connectUnix(opts.socketPath, opts.signal);
  const io = new SocketHandshakeIo(connected, opts.signal);
  let negotiated: Negotiated;
  try {
    negotiated = await negotiate(io, opts.exportName ?? '');
  } catch (err) {
    await io.abandon(err);
    throw err;
  }
  io.detach();
  return new NbdClient(new NbdConnection(connected.socket, connected.reads, io.queue, negotiated), negotiated, opts);
}

/**
 * A connected NBD export; implements BlockDevice. Reads take any range inside the export; the
 * other requests need offsets and lengths that are multiples of info.blockSizes.minimumBytes
 * (a length may end at the end of the export).
 */
export class NbdClient implements BlockDevice, AsyncDisposable {
  readonly info: NbdExportInfo;
  readonly #conn: NbdConnection;
  readonly #limit: InFlightLimit;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => this.#fail(cancelledError(this.#signal));
  #closing = false;
  #zeroBuffer: Uint8Array | undefined;

  /** Use {@link openNbdClient}. */
  constructor(conn: NbdConnection, negotiated: Negotiated, opts: Omit<NbdClientOptions, 'socketPath'>) {
    this.info = exportInfo(negotiated, opts.maxRequestBytes);
    this.#conn = conn;
    this.#limit = new InFlightLimit(
      positive(opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT, 'maxInFlight'),
      positive(opts.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES, 'maxInFlightBytes'),
    );
    conn.onFatal = (err) => this.#limit.fail(err);
    conn.onServerShutdown = () => void this.close();
    this.#signal = opts.signal;
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (this.#signal?.aborted) this.#onAbort();
  }

  get sizeBytes(): number {
    return this.info.sizeBytes;
  }

  get canExtents(): boolean {
    return this.info.blockStatus;
  }

  /** Reads exactly `lengthBytes` at `offsetBytes` into a new buffer. */
  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    const dest = Buffer.allocUnsafe(lengthBytes);
    await this.readInto(offsetBytes, dest);
    return dest;
  }

  /**
   * Reads `dest.byteLength` bytes at `offsetBytes` into `dest` (reuse buffers on the data path).
   * Any offset and length inside the export are served: the layout and filesystem readers ask
   * for a few bytes anywhere, while a vhdx or 4Kn export refuses requests that are not aligned
   * to its minimum block size (proto.md §Size constraints). Such a read goes out as the aligned
   * range around it, and only the asked bytes are copied out.
   */
  async readInto(offsetBytes: number, dest: Uint8Array): Promise<void> {
    this.#checkBounds(NBD_CMD_READ, offsetBytes, dest.byteLength);
    const { start, end } = this.#alignedAround(offsetBytes, dest.byteLength);
    if (start === offsetBytes && end === offsetBytes + dest.byteLength) return this.#readAligned(offsetBytes, dest);
    const bounce = Buffer.allocUnsafe(end - start);
    await this.#readAligned(start, bounce);
    dest.set(bounce.subarray(offsetBytes - start, offsetBytes - start + dest.byteLength));
  }

  /** Reads an aligned range, split at the largest request the server takes. */
  async #readAligned(offsetBytes: number, dest: Uint8Array): Promise<void> {
    this.#check(NBD_CMD_READ, offsetBytes, dest.byteLength);
    await this.#eachPiece(offsetBytes, dest.byteLength, this.info.maxRequestBytes, (at, len) => {
      const piece = dest.subarray(at - offsetBytes, at - offsetBytes + len);
      return this.#request({ type: NBD_CMD_READ, flags: 0, offsetBytes: at, lengthBytes: len, dest: piece });
    });
  }

  /**
   * base:allocation extents covering a prefix of the range (clipped to it); [] when the server
   * has no block status. Any range is taken, as for reads: the request covers the aligned range
   * around it, and a block's status holds for each of its bytes.
   */
  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.#checkBounds(NBD_CMD_BLOCK_STATUS, offsetBytes, lengthBytes);
    if (!this.canExtents || lengthBytes === 0) return [];
    const { start, end } = this.#alignedAround(offsetBytes, Math.min(lengthBytes, MAX_EFFECT_BYTES));
    const req = await this.#request({ type: NBD_CMD_BLOCK_STATUS, flags: 0, offsetBytes: start, lengthBytes: end - start });
    const stop = offsetBytes + lengthBytes;
    const clipped: Extent[] = [];
    for (const e of req.extents ?? []) {
      const from = Math.max(e.offsetBytes, offsetBytes);
      const to = Math.min(e.offsetBytes + e.lengthBytes, stop);
      if (to > from) clipped.push({ ...e, offsetBytes: from, lengthBytes: to - from });
    }
    return clipped;
  }

  /** Writes `data` at `offsetBytes`; `data` must not change until the promise settles. */
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    this.#checkWritable(NBD_CMD_WRITE, offsetBytes, data.byteLength);
    await this.#eachPiece(offsetBytes, data.byteLength, this.info.maxRequestBytes, (at, len) => {
      const payload = data.subarray(at - offsetBytes, at - offsetBytes + len);
      return this.#request({ type: NBD_CMD_WRITE, flags: 0, offsetBytes: at, lengthBytes: len, payload });
    });
  }

  /** Makes the range read as zero; with `punch` the server may deallocate it (no NBD_CMD_FLAG_NO_HOLE). */
  async writeZeroes(
    offsetBytes: number,
    lengthBytes: number,
    punch: boolean,
    options: WriteZeroesOptions = {},
  ): Promise<void> {
    const type = NBD_CMD_WRITE_ZEROES;
    this.#checkWritable(type, offsetBytes, lengthBytes);
    if (lengthBytes === 0) return;
    const fast = options.fastZero === true;
    if (fast && !this.info.canFastZero) {
      throw new NbdRequestError({ type, offsetBytes, lengthBytes }, NBD_ENOTSUP, 'the server cannot zero fast');
    }
    if (!this.info.canWriteZeroes) return this.#writeZeroBuffers(offsetBytes, lengthBytes);
    const flags = (punch ? 0 : NBD_CMD_FLAG_NO_HOLE) | (fast ? NBD_CMD_FLAG_FAST_ZERO : 0);
    await this.#eachPiece(offsetBytes, lengthBytes, MAX_EFFECT_BYTES, (at, len) =>
      this.#request({ type, flags, offsetBytes: at, lengthBytes: len }),
    );
  }

  /** NBD_CMD_TRIM; a no-op when the export cannot trim (trim is only a hint; see info.canTrim). */
  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#checkWritable(NBD_CMD_TRIM, offsetBytes, lengthBytes);
    if (!this.info.canTrim || lengthBytes === 0) return;
    await this.#eachPiece(offsetBytes, lengthBytes, MAX_EFFECT_BYTES, (at, len) =>
      this.#request({ type: NBD_CMD_TRIM, flags: 0, offsetBytes: at, lengthBytes: len }),
    );
  }

  /** NBD_CMD_FLUSH: every write answered so far reaches stable storage; a no-op without NBD_FLAG_SEND_FLUSH. */
  async flush(): Promise<void> {
    if (!this.info.canFlush) return;
    await this.#request({ type: NBD_CMD_FLUSH, flags: 0, offsetBytes: 0, lengthBytes: 0 });
  }

  /** Waits for every request in flight, sends NBD_CMD_DISC and closes the socket; idempotent. */
  readonly close = once(async () => {
    this.#closing = true;
    await this.#limit.idle();
    await this.#conn.disconnect();
    this.#signal?.removeEventListener('abort', this.#onAbort);
  });

  /** Same as close(). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #fail(err: Error): void {
    this.#limit.fail(err);
    this.#conn.fail(err);
  }

  async #request(cmd: Command): Promise<InFlight> {
    if (this.#closing) throw new SparsifyError('INTERNAL', `NBD ${commandName(cmd.type)} after close()`);
    const bytes = cmd.payload?.byteLength ?? cmd.dest?.byteLength ?? 0;
    await this.#limit.acquire(bytes);
    try {
      return await this.#conn.send(cmd);
    } finally {
      this.#limit.release(bytes);
    }
  }

  /** Runs `fn` on consecutive pieces of at most `maxPiece` bytes, all in flight together. */
  async #eachPiece(offsetBytes: number, lengthBytes: number, maxPiece: number, fn: PieceFn): Promise<void> {
    const end = offsetBytes + lengthBytes;
    if (lengthBytes <= maxPiece) {
      if (lengthBytes > 0) await fn(offsetBytes, lengthBytes);
      return;
    }
    const pieces: Promise<unknown>[] = [];
    for (let at = offsetBytes; at < end; at += maxPiece) pieces.push(fn(at, Math.min(maxPiece, end - at)));
    await Promise.all(pieces);
  }

  /** Without NBD_FLAG_SEND_WRITE_ZEROES, zeroes are written as data. */
  async #writeZeroBuffers(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#zeroBuffer ??= new Uint8Array(Math.min(this.info.maxRequestBytes, ZERO_BUFFER_BYTES));
    const zeros = this.#zeroBuffer;
    await this.#eachPiece(offsetBytes, lengthBytes, zeros.byteLength, (at, len) => {
      const payload = zeros.subarray(0, len);
      return this.#request({ type: NBD_CMD_WRITE, flags: 0, offsetBytes: at, lengthBytes: len, payload });
    });
  }

  #checkWritable(type: number, offsetBytes: number, lengthBytes: number): void {
    this.#check(type, offsetBytes, lengthBytes);
    if (this.info.readOnly) {
      throw new NbdRequestError({ type, offsetBytes, lengthBytes }, NBD_EPERM, 'the export is read-only');
    }
  }

  /** The smallest range aligned to the minimum block size around [offsetBytes, +lengthBytes), ending at most at the export's end. */
  #alignedAround(offsetBytes: number, lengthBytes: number): { start: number; end: number } {
    const min = this.info.blockSizes.minimumBytes;
    const start = offsetBytes - (offsetBytes % min);
    const end = Math.min(Math.ceil((offsetBytes + lengthBytes) / min) * min, this.info.sizeBytes);
    return { start, end };
  }

  /** Inside the export, in whole bytes. */
  #checkBounds(type: number, offsetBytes: number, lengthBytes: number): void {
    const size = this.info.sizeBytes;
    const integral = Number.isSafeInteger(offsetBytes) && Number.isSafeInteger(lengthBytes);
    if (!integral || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > size) {
      throw new RangeError(`NBD ${commandName(type)} ${offsetBytes}+${lengthBytes} is outside the ${size}-byte export`);
    }
  }

  /** proto.md §Size constraints: inside the export, aligned to the minimum block size. */
  #check(type: number, offsetBytes: number, lengthBytes: number): void {
    this.#checkBounds(type, offsetBytes, lengthBytes);
    const size = this.info.sizeBytes;
    const what = `NBD ${commandName(type)} ${offsetBytes}+${lengthBytes}`;
    const min = this.info.blockSizes.minimumBytes;
    if (offsetBytes % min !== 0 || (lengthBytes % min !== 0 && offsetBytes + lengthBytes !== size)) {
      throw new RangeError(`${what} is not aligned to the export's ${min}-byte minimum block size`);
    }
  }
}
