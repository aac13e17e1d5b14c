import { afterEach, describe, expect, it } from 'vitest';
import { isSparsifyError } from '../../../src/errors.js';
import { type NbdClient, openNbdClient } from '../../../src/nbd/client.js';
import {
  ALL_FLAGS, type FakeOptions, type FakeRequest, type FakeServer, HAS_FLAGS, READ_ONLY, startFakeServer,
} from './fake-server.js';

let server: FakeServer | undefined;
let client: NbdClient | undefined;

afterEach(async () => {
  await client?.close();
  await server?.close();
  client = undefined;
  server = undefined;
});

async function open(opts: FakeOptions = {}, clientOpts: { maxInFlight?: number } = {}): Promise<NbdClient> {
  server = await startFakeServer(opts);
  client = await openNbdClient({ socketPath: server.socketPath, exportName: 'disk', ...clientOpts });
  return client;
}

const pattern = (n: number, seed = 1): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

describe('NbdClient against a fake server', () => {
  it('negotiates and decodes the export info', async () => {
    const c = await open({ sizeBytes: 1 << 20, transmissionFlags: ALL_FLAGS });
    expect(c.sizeBytes).toBe(1 << 20);
    expect(c.canExtents).toBe(true);
    expect(c.info).toMatchObject({
      exportName: 'disk', readOnly: false, canFlush: true, canTrim: true, canWriteZeroes: true, canFastZero: false,
      structuredReplies: true, blockStatus: true, blockSizesAdvertised: false,
      blockSizes: { minimumBytes: 1, preferredBytes: 4096, maximumBytes: 32 * 2 ** 20 },
    });
  });

  it('rejects an unknown export name with the server message', async () => {
    server = await startFakeServer({ exportName: 'disk' });
    const err = await openNbdClient({ socketPath: server.socketPath, exportName: 'other' }).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'NOT_FOUND')).toBe(true);
    expect((err as Error).message).toBe('the NBD server has no export named "other": no export other');
  });

  it('fails to connect with TOOL_FAILED and the errno as cause', async () => {
    const err = await openNbdClient({ socketPath: '/tmp/sparsify-nbd-none/sock' }).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'TOOL_FAILED')).toBe(true);
    expect((err as Error).message).toMatch(/cannot connect to the NBD server at \/tmp\/sparsify-nbd-none\/sock: ENOENT/);
  });

  it('splits reads and writes at the maximum payload and keeps them aligned', async () => {
    const c = await open({ sizeBytes: 1 << 20, blockSizes: [512, 4096, 65536] });
    expect(c.info.maxRequestBytes).toBe(65536);
    const data = pattern(300 * 1024);
    await c.write(4096, data);
    const writes = server?.requests.filter((r) => r.type === 1) ?? [];
    expect(writes.length).toBe(5);
    expect(writes.every((r) => r.length <= 65536 && r.offset % 512 === 0 && r.length % 512 === 0)).toBe(true);
    expect(Buffer.from(await c.read(4096, data.length)).equals(data)).toBe(true);
    await expect(c.read((1 << 20) - 512, 1024)).rejects.toThrow(/outside the 1048576-byte export/);
  });

  it('matches replies sent out of order, in pieces, to many requests in flight', async () => {
    const held: FakeRequest[] = [];
    const c = await open({
      sizeBytes: 1 << 20,
      onRequest: (req, conn) => {
        held.push(req);
        if (held.length < 32) return;
        for (const r of held.reverse()) {
          const half = r.length / 2;
          conn.data(r.cookie, r.offset + half, conn.disk.subarray(r.offset + half, r.offset + r.length), false);
          conn.data(r.cookie, r.offset, conn.disk.subarray(r.offset, r.offset + half), true);
        }
        held.length = 0;
      },
    });
    server?.connections[0]?.disk.set(pattern(1 << 20, 7));
    const disk = pattern(1 << 20, 7);
    const offsets = Array.from({ length: 64 }, (_, i) => i * 16384 + (i % 5) * 2);
    const results = await Promise.all(offsets.map((o) => c.read(o, 8192)));
    results.forEach((r, i) => expect(Buffer.from(r).equals(disk.subarray(offsets[i], (offsets[i] ?? 0) + 8192))).toBe(true));
  });

  // Large data goes straight from the socket into the destination: every byte must still land
  // in its place, whether the data comes in structured chunks out of order or in simple replies.
  for (const structuredReplies of [true, false]) {
    it(`reads replies larger than the socket's scratch buffer exactly (structured replies: ${structuredReplies})`, async () => {
      const c = await open({
        sizeBytes: 8 << 20,
        structuredReplies,
        onRequest: (req, conn) => {
          if (!structuredReplies || req.type !== 0) return conn.serve(req);
          const third = Math.floor(req.length / 3);
          const piece = (from: number, to: number, done: boolean): void =>
            conn.data(req.cookie, req.offset + from, conn.disk.subarray(req.offset + from, req.offset + to), done);
          piece(third, req.length, false);
          piece(0, third, true);
        },
      });
      server?.connections[0]?.disk.set(pattern(8 << 20, 3));
      const disk = pattern(8 << 20, 3);
      const ranges = [[0, 1 << 20], [(1 << 20) + 5, 700_000], [3 << 20, 2 << 20], [6 << 20, 100], [(6 << 20) + 4096, 200_000]] as const;
      const results = await Promise.all(ranges.map(([o, n]) => c.read(o, n)));
      results.forEach((r, i) => {
        const [o, n] = ranges[i]!;
        expect(Buffer.from(r).equals(disk.subarray(o, o + n))).toBe(true);
      });
    });
  }

  // The socket reads into one reused buffer: bytes of a reply left over after one read must
  // survive the next read into that buffer.
  it('parses replies whose headers arrive split across socket reads', async () => {
    const c = await open({
      onRequest: (req, conn) => {
        if (req.type !== 1) return conn.serve(req);
        conn.disk.set(req.payload ?? Buffer.alloc(0), req.offset);
        const reply = Buffer.concat([Buffer.from([0x67, 0x44, 0x66, 0x98, 0, 0, 0, 0]), req.cookie]);
        conn.send(reply.subarray(0, 7));
        setTimeout(() => conn.send(reply.subarray(7, 11)), 20);
        setTimeout(() => conn.send(reply.subarray(11)), 40);
      },
    });
    for (let i = 0; i < 3; i++) await c.write(i * 512, pattern(512, i));
    expect(Buffer.from(await c.read(0, 1536)).equals(Buffer.concat([0, 1, 2].map((i) => pattern(512, i))))).toBe(true);
  });

  it('keeps at most maxInFlight requests at the server', async () => {
    let outstanding = 0;
    let most = 0;
    const c = await open({
      onRequest: (req, conn) => {
        outstanding += 1;
        most = Math.max(most, outstanding);
        setTimeout(() => {
          outstanding -= 1;
          conn.serve(req);
        }, 2);
      },
    }, { maxInFlight: 4 });
    await Promise.all(Array.from({ length: 40 }, (_, i) => c.read(i * 512, 512)));
    expect(most).toBe(4);
  });

  it('sends write-zeroes with or without NO_HOLE, and trim, flush and block status', async () => {
    const c = await open();
    await c.writeZeroes(0, 4096, true);
    await c.writeZeroes(4096, 4096, false);
    await c.trim(8192, 4096);
    await c.flush();
    expect(await c.extents(0, 65536)).toEqual([{ offsetBytes: 0, lengthBytes: 65536, zero: false, hole: false }]);
    const sent = (server?.requests ?? []).map((r) => [r.type, r.flags, r.offset, r.length]);
    expect(sent).toEqual([[6, 0, 0, 4096], [6, 2, 4096, 4096], [4, 0, 8192, 4096], [3, 0, 0, 0], [7, 0, 0, 65536]]);
    await expect(c.writeZeroes(0, 4096, true, { fastZero: true })).rejects.toMatchObject({ code: 'UNSUPPORTED' });
  });

  it('works with simple replies only, writes zeroes as data without WRITE_ZEROES, and skips trim', async () => {
    const c = await open({ structuredReplies: false, transmissionFlags: HAS_FLAGS });
    expect(c.info.structuredReplies).toBe(false);
    expect(c.canExtents).toBe(false);
    expect(await c.extents(0, 4096)).toEqual([]);
    server?.connections[0]?.disk.fill(9);
    await c.writeZeroes(512, 1024, true);
    await c.trim(0, 512);
    const back = Buffer.from(await c.read(0, 2048));
    expect([back[0], back[511], back[512], back[1535], back[1536]]).toEqual([9, 9, 0, 0, 9]);
    expect(server?.requests.map((r) => r.type)).toEqual([1, 0]);
  });

  it('refuses writes to a read-only export without sending them', async () => {
    const c = await open({ transmissionFlags: HAS_FLAGS | READ_ONLY });
    const err = await c.write(0, Buffer.alloc(512)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'UNSUPPORTED', errnoName: 'EPERM' });
    expect((err as Error).message).toBe('NBD write at offset 0 (512 bytes) failed: EPERM: the export is read-only');
    expect(server?.requests).toEqual([]);
  });

  it('waits for requests in flight on close, then disconnects; close is idempotent', async () => {
    let release: (() => void) | undefined;
    const c = await open({ onRequest: (req, conn) => (release = () => conn.serve(req)) });
    const read = c.read(0, 512);
    await new Promise((r) => setTimeout(r, 20));
    const closing = c.close();
    expect(c.close()).toBe(closing);
    await expect(c.read(0, 512)).rejects.toThrow(/after close/);
    release?.();
    await expect(read).resolves.toHaveLength(512);
    await closing;
    expect(server?.requests.map((r) => r.type)).toEqual([0, 2]);
  });
});

const SIZE = 1 << 20;

/** A disk whose every byte differs from its neighbours', so a shifted read cannot pass. */
const disk = (): Buffer => Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 131 + (i >> 8) * 7 + 3) & 0xff));

async function openAligned(minimumBytes: number): Promise<NbdClient> {
  const c = await open({ sizeBytes: SIZE, blockSizes: [minimumBytes, 4096, 65536] });
  server?.connections[0]?.disk.set(disk());
  return c;
}

function aligned(minimumBytes: number): boolean {
  return (server?.requests ?? []).every((r) => r.type === 2 || (r.offset % minimumBytes === 0 && (r.length % minimumBytes === 0 || r.offset + r.length === SIZE)));
}

describe.each([512, 4096])('NbdClient on an export with a %i-byte minimum block size', (minimumBytes) => {
  it('serves reads at any offset and length with aligned requests only (a vhdx export refuses the rest)', async () => {
    const c = await openAligned(minimumBytes);
    const want = disk();
    const cases: [number, number][] = [
      [1064950 - 65536 * 8, 10], // the read that failed on a vhdx input
      [0, 1], [511, 2], [4095, 4098], [100, 200_000], [7, 65536 * 2 + 5], [SIZE - 3, 3], [SIZE - 70_000, 70_000], [SIZE - 1, 1],
    ];
    for (const [offset, length] of cases) {
      const got = Buffer.from(await c.read(offset, length));
      expect(got.equals(want.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
    }
    expect(aligned(minimumBytes)).toBe(true);
    // Larger than the 64 KiB maximum: split into requests no larger than it.
    expect(server!.requests.filter((r) => r.type === 0).every((r) => r.length <= 65536)).toBe(true);
  });

  it('readInto fills exactly the asked bytes of a buffer it does not own', async () => {
    const c = await openAligned(minimumBytes);
    const dest = Buffer.alloc(1000, 0xee);
    await c.readInto(3001, dest.subarray(10, 990));
    expect(dest.subarray(10, 990).equals(disk().subarray(3001, 3981))).toBe(true);
    expect([dest[9], dest[990]]).toEqual([0xee, 0xee]);
  });

  it('answers block status for any range, clipped to it', async () => {
    const c = await openAligned(minimumBytes);
    expect(await c.extents(1000, 3000)).toEqual([{ offsetBytes: 1000, lengthBytes: 3000, zero: false, hole: false }]);
    expect(aligned(minimumBytes)).toBe(true);
  });

  it('still refuses a read outside the export', async () => {
    const c = await openAligned(minimumBytes);
    await expect(c.read(SIZE - 2, 3)).rejects.toThrow(/outside the 1048576-byte export/);
  });
});
