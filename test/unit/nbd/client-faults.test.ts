import { afterEach, describe, expect, it } from 'vitest';
import { SparsifyError, isSparsifyError } from '../../../src/errors.js';
import { type NbdClient, openNbdClient } from '../../../src/nbd/client.js';
import { type FakeConnection, type FakeOptions, type FakeRequest, type FakeServer, startFakeServer } from './fake-server.js';

let server: FakeServer | undefined;
let client: NbdClient | undefined;

afterEach(async () => {
  await client?.close();
  await server?.close();
  client = undefined;
  server = undefined;
});

async function open(onRequest: FakeOptions['onRequest'], signal?: AbortSignal): Promise<NbdClient> {
  server = await startFakeServer({ onRequest });
  client = await openNbdClient({ socketPath: server.socketPath, exportName: 'disk', ...(signal ? { signal } : {}) });
  return client;
}

/** Answers after `n` requests have arrived, so that several are in flight when the fault hits. */
function afterRequests(n: number, fault: (reqs: FakeRequest[], conn: FakeConnection) => void): FakeOptions['onRequest'] {
  const reqs: FakeRequest[] = [];
  return (req, conn) => {
    reqs.push(req);
    if (reqs.length === n) fault(reqs, conn);
  };
}

async function settleAll(promises: Promise<unknown>[]): Promise<unknown[]> {
  return Promise.all(promises.map((p) => p.then((v) => v, (e: unknown) => e)));
}

function expectProtocolErrors(results: unknown[], pattern: RegExp): void {
  for (const r of results) {
    expect(isSparsifyError(r, 'NBD_PROTOCOL')).toBe(true);
    expect((r as Error).message).toMatch(/^NBD server broke the protocol: /);
    expect((r as Error).message).toMatch(pattern);
  }
}

describe('NbdClient protocol violations end the connection, never the process', () => {
  it('bad magic fails every pending request', async () => {
    const c = await open(afterRequests(3, (_, conn) => conn.send(Buffer.alloc(32, 0x55))));
    const results = await settleAll([c.read(0, 512), c.read(512, 512), c.write(0, Buffer.alloc(512))]);
    expectProtocolErrors(results, /bad reply magic 0x55555555 at byte 0 of the reply stream/);
    await expect(c.read(0, 512)).rejects.toMatchObject({ code: 'NBD_PROTOCOL' });
  });

  it('a reply for an unknown cookie fails every pending request', async () => {
    const c = await open(afterRequests(2, (reqs, conn) => {
      conn.serve(reqs[0] as FakeRequest);
      conn.simple(Buffer.from('00000000ffff0000', 'hex'), 0);
    }));
    const [first, second] = await settleAll([c.flush(), c.flush()]);
    expect(first).toBeUndefined();
    expectProtocolErrors([second], /reply for unknown cookie 0xffff0000/);
  });

  it('a reply truncated by a closed connection fails the request', async () => {
    const c = await open(afterRequests(2, (reqs, conn) => {
      const r = reqs[0] as FakeRequest;
      const header = Buffer.alloc(28);
      header.writeUInt32BE(0x668e33ef, 0);
      header.writeUInt16BE(1, 4);
      header.writeUInt16BE(1, 6);
      r.cookie.copy(header, 8);
      header.writeUInt32BE(8 + 4096, 16);
      conn.send(Buffer.concat([header, Buffer.alloc(100)]));
      conn.socket.end();
    }));
    const results = await settleAll([c.read(0, 4096), c.read(4096, 4096)]);
    expectProtocolErrors(results, /connection closed by the server with 2 request\(s\) in flight, truncating a reply, at byte 128 of the reply stream in the reply to read 0\+4096/);
  });

  it('an oversize chunk length fails the request before any payload is read', async () => {
    const c = await open((req, conn) => {
      const header = Buffer.alloc(20);
      header.writeUInt32BE(0x668e33ef, 0);
      header.writeUInt16BE(5, 6);
      req.cookie.copy(header, 8);
      header.writeUInt32BE(0xfffffff0, 16);
      conn.send(header);
    });
    expectProtocolErrors(await settleAll([c.extents(0, 4096)]), /oversize block status chunk \(4294967280 bytes\)/);
  });

  it('data outside the request fails it', async () => {
    const c = await open((req, conn) => conn.data(req.cookie, req.offset + 4096, Buffer.alloc(512), true));
    expectProtocolErrors(await settleAll([c.read(0, 4096)]), /data chunk covers 4096\+512, outside the request 0\+4096/);
  });
});

describe('NbdClient server errors fail only their request', () => {
  it('names the command, offset and errno, maps ENOSPC to NO_SPACE, and keeps the connection', async () => {
    const c = await open((req, conn) => {
      if (req.type === 0 && req.offset === 0) conn.error(req.cookie, 5, 'bad sector', 512);
      else if (req.type === 1) conn.simple(req.cookie, 28);
      else if (req.type === 4) conn.error(req.cookie, 1, '');
      else conn.serve(req);
    });
    const [read, write, trim] = await settleAll([c.read(0, 4096), c.write(8192, Buffer.alloc(4096)), c.trim(0, 4096)]);
    expect(read).toMatchObject({ code: 'TOOL_FAILED', errnoName: 'EIO', command: 'read', offsetBytes: 0 });
    expect((read as Error).message).toBe('NBD read at offset 0 (4096 bytes) failed: EIO (at offset 512): bad sector');
    expect(write).toMatchObject({ code: 'NO_SPACE', errno: 28 });
    expect((write as Error).message).toBe('NBD write at offset 8192 (4096 bytes) failed: ENOSPC');
    expect(trim).toMatchObject({ code: 'UNSUPPORTED', errnoName: 'EPERM' });
    await expect(c.read(4096, 4096)).resolves.toHaveLength(4096);
  });

  it('disconnects after ESHUTDOWN', async () => {
    const c = await open((req, conn) => conn.simple(req.cookie, 108));
    await expect(c.flush()).rejects.toMatchObject({ errnoName: 'ESHUTDOWN' });
    await c.close();
    expect(server?.requests.map((r) => r.type)).toEqual([3, 2]);
  });
});

describe('NbdClient cancellation', () => {
  it('aborting fails pending and queued requests with CANCELLED and closes', async () => {
    const abort = new AbortController();
    const c = await open(() => {}, abort.signal);
    const pending = settleAll([c.read(0, 512), c.flush()]);
    await new Promise((r) => setTimeout(r, 20));
    abort.abort();
    for (const r of await pending) expect(isSparsifyError(r, 'CANCELLED')).toBe(true);
    await expect(c.read(0, 512)).rejects.toMatchObject({ code: 'CANCELLED' });
    await c.close();
  });

  it("fails requests with the run's own CANCELLED error (the abort reason), not one of its own", async () => {
    const abort = new AbortController();
    const c = await open(() => {}, abort.signal);
    const pending = settleAll([c.read(0, 512)]);
    await new Promise((r) => setTimeout(r, 20));
    const reason = new SparsifyError('CANCELLED', 'quit (^C) at user request');
    abort.abort(reason);
    expect(await pending).toEqual([reason]);
    await expect(c.read(0, 512)).rejects.toBe(reason);
    await c.close();
  });

  it('an aborted signal refuses to open', async () => {
    server = await startFakeServer();
    const abort = new AbortController();
    abort.abort();
    await expect(openNbdClient({ socketPath: server.socketPath, signal: abort.signal })).rejects.toMatchObject({
      code: 'CANCELLED',
    });
  });
});
