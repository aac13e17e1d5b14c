import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Extent } from '../../src/disk/types.js';
import { isSparsifyError } from '../../src/errors.js';
import { type NbdClient, type NbdClientOptions, openNbdClient } from '../../src/nbd/client.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 2 ** 20;
const TOOLS = ['qemu-storage-daemon', 'qemu-img', 'qemu-nbd', 'nbdinfo'];

interface Daemon {
  readonly child: ChildProcess;
  stderr: string;
}

/** Starts a daemon and returns once an NBD handshake on its socket succeeds (retried, no fixed sleep). */
async function startDaemon(argv: string[], socketPath: string, exportName: string): Promise<Daemon> {
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  const daemon: Daemon = { child, stderr: '' };
  child.stderr?.on('data', (d: Buffer) => (daemon.stderr += d.toString()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${argv[0]} exited: ${daemon.stderr}`);
    try {
      await (await openNbdClient({ socketPath, exportName })).close();
      return daemon;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function stopDaemon(daemon: Daemon | undefined): Promise<void> {
  const child = daemon?.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Every extent of the export, from repeated block status calls, with equal neighbours merged. */
async function allExtents(c: NbdClient): Promise<Extent[]> {
  const out: Extent[] = [];
  for (let at = 0; at < c.sizeBytes; ) {
    const got = await c.extents(at, c.sizeBytes - at);
    expect(got.length).toBeGreaterThan(0);
    expect(got[0]?.offsetBytes).toBe(at);
    for (const e of got) out.push(e);
    at = (got.at(-1) as Extent).offsetBytes + (got.at(-1) as Extent).lengthBytes;
  }
  return merge(out.map((e) => ({ ...e })));
}

function merge(extents: Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    const last = out.at(-1);
    if (last && last.zero === e.zero && last.hole === e.hole) out[out.length - 1] = { ...last, lengthBytes: last.lengthBytes + e.lengthBytes };
    else out.push(e);
  }
  return out;
}

/** `nbdinfo --map` of the same export, as extents. */
function nbdinfoMap(socketPath: string, exportName: string): Extent[] {
  const json = execFileSync('nbdinfo', ['--map', '--json', `nbd+unix:///${exportName}?socket=${socketPath}`]).toString();
  const map = JSON.parse(json) as Array<{ offset: number; length: number; type: number }>;
  return merge(map.map((m) => ({ offsetBytes: m.offset, lengthBytes: m.length, hole: (m.type & 1) !== 0, zero: (m.type & 2) !== 0 })));
}

/** 200 reads of random ranges, all in flight together, each compared with the expected bytes. */
async function checkRandomReads(c: NbdClient, expected: Buffer): Promise<void> {
  const align = c.info.blockSizes.minimumBytes;
  const ranges = Array.from({ length: 200 }, () => {
    const length = (1 + Math.floor(Math.random() * 256 * 1024 / align)) * align;
    const offset = Math.floor(Math.random() * (expected.length - length) / align) * align;
    return { offset, length };
  });
  const results = await Promise.all(ranges.map((r) => c.read(r.offset, r.length)));
  results.forEach((got, i) => {
    const { offset, length } = ranges[i] as { offset: number; length: number };
    expect(Buffer.compare(Buffer.from(got), expected.subarray(offset, offset + length))).toBe(0);
  });
}

describeIntegration('NBD client against qemu-storage-daemon (writable qcow2)', { tools: TOOLS }, () => {
  const sizeBytes = 64 * MiB;
  const model = Buffer.alloc(sizeBytes);
  let dir = '';
  let image = '';
  let socketPath = '';
  let daemon: Daemon | undefined;
  let c: NbdClient;

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/sparsify-nbd-qsd-');
    image = join(dir, 'disk.qcow2');
    socketPath = join(dir, 'sock');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(sizeBytes)]);
    daemon = await startDaemon([
      'qemu-storage-daemon',
      '--blockdev', `driver=file,node-name=file0,filename=${image},discard=unmap`,
      '--blockdev', 'driver=qcow2,node-name=disk0,file=file0,discard=unmap',
      '--nbd-server', `addr.type=unix,addr.path=${socketPath}`,
      '--export', 'type=nbd,id=e,node-name=disk0,writable=on,name=disk',
    ], socketPath, 'disk');
    c = await openNbdClient({ socketPath, exportName: 'disk' });
  });

  afterAll(async () => {
    await c?.close();
    await stopDaemon(daemon);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates size, flags, structured replies, block status and block sizes', () => {
    expect(c.sizeBytes).toBe(sizeBytes);
    expect(c.info).toMatchObject({
      exportName: 'disk', readOnly: false, canFlush: true, canTrim: true, canWriteZeroes: true,
      structuredReplies: true, blockStatus: true,
    });
    const { minimumBytes, preferredBytes, maximumBytes } = c.info.blockSizes;
    expect(minimumBytes).toBeLessThanOrEqual(preferredBytes);
    expect(preferredBytes).toBeLessThanOrEqual(maximumBytes);
    expect(c.info.maxRequestBytes).toBeLessThanOrEqual(32 * MiB);
  });

  it('reports a fresh qcow2 as one zero hole, like nbdinfo --map', async () => {
    const extents = await allExtents(c);
    expect(extents).toEqual([{ offsetBytes: 0, lengthBytes: sizeBytes, zero: true, hole: true }]);
    expect(nbdinfoMap(socketPath, 'disk')).toEqual(extents);
  });

  it('reads back what it wrote, and block status turns to data', async () => {
    const data = randomBytes(5 * MiB + 4096);
    await c.write(3 * MiB - 4096, data);
    data.copy(model, 3 * MiB - 4096);
    expect(Buffer.from(await c.read(3 * MiB - 4096, data.length)).equals(data)).toBe(true);
    const extents = await allExtents(c);
    const dataExtent = extents.find((e) => !e.zero);
    expect(dataExtent?.hole).toBe(false);
    expect(dataExtent?.offsetBytes).toBeLessThanOrEqual(3 * MiB - 4096);
    expect((dataExtent?.offsetBytes ?? 0) + (dataExtent?.lengthBytes ?? 0)).toBeGreaterThanOrEqual(8 * MiB);
    expect(nbdinfoMap(socketPath, 'disk')).toEqual(extents);
  });

  it('splits a read larger than the maximum request', async () => {
    await using small = await openNbdClient({ socketPath, exportName: 'disk', maxRequestBytes: 64 * 1024 });
    expect(Buffer.from(await small.read(0, 12 * MiB)).equals(model.subarray(0, 12 * MiB))).toBe(true);
  });

  it('zeroes ranges with and without NO_HOLE, and trims', async () => {
    await c.writeZeroes(4 * MiB, MiB, false);
    await c.writeZeroes(5 * MiB, MiB, true);
    await c.trim(6 * MiB, MiB);
    model.fill(0, 4 * MiB, 7 * MiB);
    await c.flush();
    expect((await c.read(4 * MiB, 3 * MiB)).every((b) => b === 0)).toBe(true);
    expect(await c.extents(4 * MiB, 2 * MiB)).toEqual([
      expect.objectContaining({ offsetBytes: 4 * MiB, lengthBytes: 2 * MiB, zero: true }),
    ]);
    const trimmed = await c.extents(6 * MiB, MiB);
    expect(trimmed[0]).toMatchObject({ offsetBytes: 6 * MiB, hole: true });
  });

  it('matches 200 concurrent random reads against the expected bytes', async () => {
    await checkRandomReads(c, model);
  });

  it('refuses an unknown export name', async () => {
    const err = await openNbdClient({ socketPath, exportName: 'nope' }).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'NOT_FOUND')).toBe(true);
    expect((err as Error).message).toMatch(/no export named "nope"/);
  });

  it('leaves an image that qemu-img compare finds identical to what was written', async () => {
    await c.close();
    await stopDaemon(daemon);
    const raw = join(dir, 'expected.raw');
    writeFileSync(raw, model);
    const out = execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', image, raw]).toString();
    expect(out).toMatch(/Images are identical/);
  });
});

describeIntegration('NBD client against qemu-nbd (read-only qcow2)', { tools: TOOLS }, () => {
  let dir = '';
  let raw = '';
  let socketPath = '';
  let opts: NbdClientOptions;
  let daemon: Daemon | undefined;
  let expected: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/sparsify-nbd-qnbd-');
    raw = join(dir, 'src.raw');
    const image = join(dir, 'src.qcow2');
    socketPath = join(dir, 'sock');
    opts = { socketPath, exportName: 'name' };
    expected = Buffer.concat([randomBytes(6 * MiB), Buffer.alloc(4 * MiB), randomBytes(6 * MiB)]);
    writeFileSync(raw, expected);
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image]);
    daemon = await startDaemon(
      ['qemu-nbd', '-r', '-t', '--shared=8', '-k', socketPath, '-f', 'qcow2', '-x', 'name', image],
      socketPath, 'name',
    );
  });

  afterAll(async () => {
    await stopDaemon(daemon);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves 200 concurrent random reads, split into small requests, identical to the file', async () => {
    await using c = await openNbdClient({ ...opts, maxRequestBytes: 32 * 1024 });
    expect(c.sizeBytes).toBe(expected.length);
    await checkRandomReads(c, readFileSync(raw));
  });

  it('reports the zero range in block status, like nbdinfo --map', async () => {
    await using c = await openNbdClient(opts);
    const extents = await allExtents(c);
    expect(extents.some((e) => e.zero && e.offsetBytes <= 6 * MiB && e.offsetBytes + e.lengthBytes >= 10 * MiB)).toBe(true);
    expect(nbdinfoMap(socketPath, 'name')).toEqual(extents);
  });

  it('rejects writes, write-zeroes and trims on the read-only export with a clear error', async () => {
    await using c = await openNbdClient(opts);
    expect(c.info.readOnly).toBe(true);
    await expect(c.write(0, Buffer.alloc(4096))).rejects.toThrow(
      'NBD write at offset 0 (4096 bytes) failed: EPERM: the export is read-only',
    );
    await expect(c.writeZeroes(0, 4096, true)).rejects.toMatchObject({ code: 'UNSUPPORTED', errnoName: 'EPERM' });
    await expect(c.trim(0, 4096)).rejects.toMatchObject({ code: 'UNSUPPORTED', errnoName: 'EPERM' });
    expect(Buffer.from(await c.read(0, 4096)).equals(expected.subarray(0, 4096))).toBe(true);
  });

  it('refuses an unknown export name', async () => {
    const err = await openNbdClient({ socketPath, exportName: 'disk' }).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'NOT_FOUND')).toBe(true);
  });
});
