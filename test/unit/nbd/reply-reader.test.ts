import { describe, expect, it } from 'vitest';
import { isSparsifyError } from '../../../src/errors.js';
import { ByteQueue } from '../../../src/nbd/byte-queue.js';
import type { ErrorChunk } from '../../../src/nbd/reply-codec.js';
import { type InFlight, ReplyReader } from '../../../src/nbd/reply-reader.js';
import { u64 } from './fake-server.js';

function cookieBytes(cookie: number): Buffer {
  return u64(cookie);
}

function chunk(cookie: number, flags: number, type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32BE(0x668e33ef, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  cookieBytes(cookie).copy(b, 8);
  b.writeUInt32BE(payload.length, 16);
  return Buffer.concat([b, payload]);
}

function simple(cookie: number, errno: number, data?: Buffer): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(0x67446698, 0);
  b.writeUInt32BE(errno, 4);
  cookieBytes(cookie).copy(b, 8);
  return data ? Buffer.concat([b, data]) : b;
}

const dataChunk = (cookie: number, offset: number, data: Buffer, done = false): Buffer =>
  chunk(cookie, done ? 1 : 0, 1, Buffer.concat([u64(offset), data]));
const holeChunk = (cookie: number, offset: number, length: number, done = false): Buffer => {
  const p = Buffer.alloc(12);
  u64(offset).copy(p);
  p.writeUInt32BE(length, 8);
  return chunk(cookie, done ? 1 : 0, 2, p);
};
const done = (cookie: number): Buffer => chunk(cookie, 1, 0);

function request(cookie: number, type: number, offsetBytes: number, lengthBytes: number): InFlight {
  return {
    cookie, type, offsetBytes, lengthBytes, dest: type === 0 ? Buffer.alloc(lengthBytes, 0xee) : undefined,
    extents: undefined, error: undefined, contentEnd: offsetBytes, contentRanges: undefined,
  };
}

/** Feeds `stream` to a reader in pieces of `step` bytes; returns what settled, in order. */
function run(reqs: InFlight[], stream: Buffer, step = stream.length, structured = true) {
  const queue = new ByteQueue();
  const pending = new Map(reqs.map((r) => [r.cookie, r]));
  const settled: Array<{ cookie: number; error: ErrorChunk | undefined }> = [];
  const reader = new ReplyReader(queue, {
    structuredReplies: structured,
    baseAllocationId: 1,
    lookup: (c) => pending.get(c),
    settle: (req, error) => {
      pending.delete(req.cookie);
      settled.push({ cookie: req.cookie, error });
    },
  });
  for (let at = 0; at < stream.length; at += step) {
    queue.push(stream.subarray(at, at + step));
    reader.feed();
  }
  return { settled, midReply: reader.midReply };
}

function violation(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isSparsifyError(err, 'NBD_PROTOCOL')) return err.message;
    throw err;
  }
  throw new Error('expected a protocol violation');
}

describe('ReplyReader', () => {
  const a = Buffer.from('A'.repeat(3000));
  const b = Buffer.from('B'.repeat(1000));

  it('reassembles out-of-order data and hole chunks, interleaved between requests, at any split', () => {
    const stream = Buffer.concat([
      dataChunk(2, 8192 + 1000, b), // request 2, second part first
      holeChunk(1, 100, 900),
      dataChunk(2, 8192, b),
      dataChunk(1, 1000, a, true),
      simple(3, 0),
      dataChunk(1 + 0, 0, Buffer.alloc(0)).subarray(0, 0),
      dataChunk(1, 0, Buffer.from('x'.repeat(100))).subarray(0, 0),
      done(2),
    ]);
    for (const step of [1, 7, 20, 4096, stream.length]) {
      const r1 = request(1, 0, 0, 4000);
      // the first 100 bytes of request 1 come in a later stream below
      const reqs = [r1, request(2, 0, 8192, 2000), request(3, 1, 0, 10)];
      const lead = dataChunk(1, 0, Buffer.from('x'.repeat(100)));
      const { settled, midReply } = run(reqs, Buffer.concat([lead, stream]), step);
      expect(settled.map((s) => s.cookie)).toEqual([1, 3, 2]);
      expect(settled.every((s) => s.error === undefined)).toBe(true);
      expect(midReply).toBe(false);
      const d1 = reqs[0]?.dest as Buffer;
      expect(d1.subarray(0, 100).toString()).toBe('x'.repeat(100));
      expect(d1.subarray(100, 1000).every((x) => x === 0)).toBe(true);
      expect(d1.subarray(1000).toString()).toBe(a.toString());
      expect((reqs[1]?.dest as Buffer).toString()).toBe(b.toString() + b.toString());
    }
  });

  it('takes the payload of a simple read reply', () => {
    const req = request(5, 0, 0, 1000);
    const { settled } = run([req], simple(5, 0, b), 13, false);
    expect(settled).toEqual([{ cookie: 5, error: undefined }]);
    expect((req.dest as Buffer).equals(b)).toBe(true);
  });

  it('keeps the first error chunk and settles at DONE', () => {
    const msg = Buffer.from('bad sector');
    const errPayload = Buffer.concat([Buffer.from([0, 0, 0, 5, 0, msg.length]), msg, u64(512)]);
    const stream = Buffer.concat([chunk(1, 0, 0x8002, errPayload), holeChunk(1, 0, 4096), done(1)]);
    const { settled } = run([request(1, 0, 0, 4096)], stream);
    expect(settled).toEqual([{ cookie: 1, error: { errno: 5, message: 'bad sector', offsetBytes: 512 } }]);
  });

  it('stores block status extents of the selected context', () => {
    const p = Buffer.alloc(20);
    p.writeUInt32BE(1, 0);
    p.writeUInt32BE(4096, 4);
    p.writeUInt32BE(3, 8);
    p.writeUInt32BE(1 << 20, 12);
    const req = request(9, 7, 0, 8192);
    run([req], chunk(9, 1, 5, p));
    expect(req.extents).toEqual([
      { offsetBytes: 0, lengthBytes: 4096, zero: true, hole: true },
      { offsetBytes: 4096, lengthBytes: 4096, zero: false, hole: false },
    ]);
  });

  it('reports violations with what and where', () => {
    const read = (): InFlight => request(1, 0, 0, 4096);
    expect(violation(() => run([read()], Buffer.from('00000000000000000000', 'hex')))).toMatch(
      /bad reply magic 0x00000000 at byte 0 of the reply stream/,
    );
    expect(violation(() => run([read()], simple(77, 0)))).toMatch(/unknown cookie 0x4d/);
    expect(violation(() => run([read()], dataChunk(1, 0, Buffer.alloc(5000), true)))).toMatch(/data chunk of bad length 5008 at byte 20 of the reply stream in the reply to read 0\+4096 \(cookie 1\)/);
    expect(violation(() => run([read()], dataChunk(1, 4000, b, true)))).toMatch(/covers 4000\+1000, outside the request 0\+4096 at byte 28/);
    expect(violation(() => run([read()], holeChunk(1, 0, 4000, true)))).toMatch(/does not cover the request exactly at byte 32 of the reply stream in the reply to read 0\+4096 \(cookie 1\)/);
    expect(
      violation(() => run([read()], Buffer.concat([holeChunk(1, 0, 3000), holeChunk(1, 2000, 2096, true)]))),
    ).toMatch(/does not cover the request exactly/);
    expect(violation(() => run([read()], simple(1, 0, Buffer.alloc(4096))))).toMatch(/simple reply with data/);
    expect(violation(() => run([request(1, 1, 0, 1)], chunk(1, 1, 1, Buffer.alloc(9))))).toMatch(/unexpected chunk type 1/);
    expect(violation(() => run([request(1, 7, 0, 1)], done(1)))).toMatch(/without base:allocation extents/);
    expect(violation(() => run([request(1, 1, 0, 1)], chunk(1, 1, 0, Buffer.alloc(1))))).toMatch(/malformed NONE/);
    expect(violation(() => run([read()], chunk(1, 1, 1, Buffer.alloc(0)).subarray(0, 20), 20, false))).toMatch(
      /structured reply chunk without negotiation/,
    );
  });

  it('knows when the stream stops inside a reply', () => {
    const partial = dataChunk(1, 0, Buffer.alloc(4096), true).subarray(0, 100);
    expect(run([request(1, 0, 0, 4096)], partial).midReply).toBe(true);
  });
});
