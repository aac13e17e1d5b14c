/**
 * A tiny in-process NBD server on a unix socket, for injecting faults no real server makes
 * (bad magic, unknown cookies, truncated replies, chosen error codes, out-of-order replies).
 * Its encoders are written from proto.md independently of src/nbd, so they also cross-check it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One request as the fake server parsed it. */
export interface FakeRequest {
  readonly flags: number;
  readonly type: number;
  /** The 8 cookie bytes as sent. */
  readonly cookie: Buffer;
  readonly offset: number;
  readonly length: number;
  readonly payload: Buffer | undefined;
}

/** How the fake server behaves; the defaults serve an in-memory disk correctly. */
export interface FakeOptions {
  sizeBytes?: number;
  exportName?: string;
  transmissionFlags?: number;
  structuredReplies?: boolean;
  blockSizes?: [number, number, number];
  /** Answers a request; by default the in-memory disk answers it. */
  onRequest?: (req: FakeRequest, conn: FakeConnection) => void;
}

export const HAS_FLAGS = 1;
export const READ_ONLY = 2;
export const SEND_FLUSH = 4;
export const SEND_TRIM = 32;
export const SEND_WRITE_ZEROES = 64;
export const ALL_FLAGS = HAS_FLAGS | SEND_FLUSH | SEND_TRIM | SEND_WRITE_ZEROES;

/** The transmission side of one client connection. */
export class FakeConnection {
  constructor(
    readonly socket: Socket,
    readonly disk: Buffer,
    readonly structured: boolean,
  ) {}

  /** Sends raw bytes. */
  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** §Simple reply message, optionally followed by data. */
  simple(cookie: Buffer, errno: number, data?: Buffer): void {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(0x67446698, 0);
    b.writeUInt32BE(errno, 4);
    cookie.copy(b, 8);
    this.send(data ? Buffer.concat([b, data]) : b);
  }

  /** §Structured reply chunk message. */
  chunk(cookie: Buffer, flags: number, type: number, payload: Buffer = Buffer.alloc(0)): void {
    const b = Buffer.alloc(20);
    b.writeUInt32BE(0x668e33ef, 0);
    b.writeUInt16BE(flags, 4);
    b.writeUInt16BE(type, 6);
    cookie.copy(b, 8);
    b.writeUInt32BE(payload.length, 16);
    this.send(Buffer.concat([b, payload]));
  }

  /** NBD_REPLY_TYPE_OFFSET_DATA. */
  data(cookie: Buffer, offset: number, data: Buffer, done: boolean): void {
    this.chunk(cookie, done ? 1 : 0, 1, Buffer.concat([u64(offset), data]));
  }

  /** NBD_REPLY_TYPE_ERROR (or ERROR_OFFSET when `offset` is given). */
  error(cookie: Buffer, errno: number, message: string, offset?: number, done = true): void {
    const msg = Buffer.from(message);
    const head = Buffer.alloc(6);
    head.writeUInt32BE(errno, 0);
    head.writeUInt16BE(msg.length, 4);
    const parts = offset === undefined ? [head, msg] : [head, msg, u64(offset)];
    this.chunk(cookie, done ? 1 : 0, offset === undefined ? 0x8001 : 0x8002, Buffer.concat(parts));
  }

  /** The correct answer of an in-memory disk. */
  serve(req: FakeRequest): void {
    const { cookie, offset, length } = req;
    const bytes = this.disk.subarray(offset, offset + length);
    if (req.type === 0 && this.structured) this.data(cookie, offset, bytes, true);
    else if (req.type === 0) this.simple(cookie, 0, bytes);
    else if (req.type === 1) (req.payload as Buffer).copy(this.disk, offset);
    else if (req.type === 6 || req.type === 4) this.disk.fill(0, offset, offset + length);
    if (req.type === 7) {
      const p = Buffer.alloc(12);
      p.writeUInt32BE(1, 0);
      p.writeUInt32BE(length, 4);
      this.chunk(cookie, 1, 5, p);
    } else if (req.type !== 0) this.simple(cookie, 0);
  }
}

/** A listening fake server; close() stops it and removes its directory. */
export interface FakeServer {
  readonly socketPath: string;
  readonly connections: FakeConnection[];
  readonly requests: FakeRequest[];
  close(): Promise<void>;
}

export function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** Starts a fake server on a fresh unix socket. */
export async function startFakeServer(opts: FakeOptions = {}): Promise<FakeServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sparsify-nbd-fake-'));
  const socketPath = join(dir, 'sock');
  const connections: FakeConnection[] = [];
  const requests: FakeRequest[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    void handshake(socket, opts).then((ok) => {
      if (!ok) return;
      const conn = new FakeConnection(socket, Buffer.alloc(opts.sizeBytes ?? 1 << 20), opts.structuredReplies !== false);
      connections.push(conn);
      transmission(socket, (req) => {
        requests.push(req);
        if (req.type === 2) return socket.end();
        // As qemu: a request off the advertised minimum block size fails with EINVAL.
        if (opts.blockSizes && misaligned(req, opts.blockSizes[0], conn.disk.length)) return conn.simple(req.cookie, 22);
        (opts.onRequest ?? ((r, c) => c.serve(r)))(req, conn);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    connections,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function misaligned(req: FakeRequest, minimumBytes: number, sizeBytes: number): boolean {
  const endsAtSize = req.offset + req.length === sizeBytes;
  return req.offset % minimumBytes !== 0 || (req.length % minimumBytes !== 0 && !endsAtSize);
}

/** Reads exactly n bytes from a socket (handshake only). */
function reader(socket: Socket): (n: number) => Promise<Buffer | undefined> {
  let buf = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  let ended = false;
  const onData = (d: Buffer): void => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  };
  socket.on('data', onData);
  socket.on('close', () => {
    ended = true;
    wake?.();
  });
  return async (n) => {
    while (buf.length < n && !ended) await new Promise<void>((r) => (wake = r));
    if (buf.length < n) return undefined;
    const out = buf.subarray(0, n);
    buf = buf.subarray(n);
    return out;
  };
}

function optionReply(socket: Socket, option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(0x3e889045565a9n, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  socket.write(Buffer.concat([b, data]));
}

/** Fixed newstyle with NO_ZEROES; STRUCTURED_REPLY, SET_META_CONTEXT and GO. */
async function handshake(socket: Socket, opts: FakeOptions): Promise<boolean> {
  const read = reader(socket);
  const greeting = Buffer.alloc(18);
  greeting.write('NBDMAGICIHAVEOPT', 0, 'latin1');
  greeting.writeUInt16BE(3, 16);
  socket.write(greeting);
  if (!(await read(4))) return false;
  for (;;) {
    const header = await read(16);
    if (!header) return false;
    const option = header.readUInt32BE(8);
    const data = (await read(header.readUInt32BE(12))) as Buffer;
    if (option === 8) optionReply(socket, option, opts.structuredReplies === false ? 0x80000001 : 1);
    else if (option === 10) {
      const ctx = Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.from('base:allocation')]);
      optionReply(socket, option, 4, ctx);
      optionReply(socket, option, 1);
    } else if (option === 7) {
      const name = data.subarray(4, 4 + data.readUInt32BE(0)).toString();
      if (name !== (opts.exportName ?? 'disk')) {
        optionReply(socket, option, 0x80000006, Buffer.from(`no export ${name}`));
        continue;
      }
      const info = Buffer.alloc(12);
      info.writeBigUInt64BE(BigInt(opts.sizeBytes ?? 1 << 20), 2);
      info.writeUInt16BE(opts.transmissionFlags ?? ALL_FLAGS, 10);
      optionReply(socket, option, 3, info);
      if (opts.blockSizes) {
        const bs = Buffer.alloc(14);
        bs.writeUInt16BE(3, 0);
        opts.blockSizes.forEach((v, i) => bs.writeUInt32BE(v, 2 + 4 * i));
        optionReply(socket, option, 3, bs);
      }
      optionReply(socket, option, 1);
      socket.removeAllListeners('data');
      return true;
    } else if (option === 2) {
      optionReply(socket, option, 1);
      socket.end();
      return false;
    } else optionReply(socket, option, 0x80000001);
  }
}

/** Parses requests (28-byte header, then the payload of writes) and hands them on. */
function transmission(socket: Socket, onRequest: (req: FakeRequest) => void): void {
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 28) return;
      const type = buf.readUInt16BE(6);
      const length = buf.readUInt32BE(24);
      const payloadBytes = type === 1 ? length : 0;
      if (buf.length < 28 + payloadBytes) return;
      const req: FakeRequest = {
        flags: buf.readUInt16BE(4),
        type,
        cookie: Buffer.from(buf.subarray(8, 16)),
        offset: Number(buf.readBigUInt64BE(16)),
        length,
        payload: type === 1 ? Buffer.from(buf.subarray(28, 28 + length)) : undefined,
      };
      buf = buf.subarray(28 + payloadBytes);
      onRequest(req);
    }
  });
}
