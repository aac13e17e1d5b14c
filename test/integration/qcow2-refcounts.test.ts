import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, open, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { ExtentSet, type Range } from '../../src/disk/extent-set.js';
import { openFileReader } from '../helpers/file-reader.js';
import { isSparsifyError } from '../../src/errors.js';
import { openNbdClient } from '../../src/nbd/client.js';
import { readFreeClusters, type FreeClusters } from '../../src/qemu/qcow2-refcounts.js';
import { serveImage } from '../../src/qemu/storage-daemon.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const ctx = makeContext();
let dir: string;

async function qemuIo(file: string, ...commands: string[]): Promise<void> {
  await execa('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]);
}

/** Discards on the qcow2 node only: qcow2 frees the clusters, the host file keeps them. */
async function discardInQcow2(file: string, offsetBytes: number, lengthBytes: number): Promise<void> {
  const opts = `driver=qcow2,discard=unmap,pass-discard-request=off,file.driver=file,file.filename=${file},file.discard=ignore`;
  await execa('qemu-io', ['--image-opts', '-c', `discard ${offsetBytes} ${lengthBytes}`, opts]);
}

async function createQcow2(name: string, options: string[]): Promise<string> {
  const file = join(dir, `${name}.qcow2`);
  await execa('qemu-img', ['create', '-f', 'qcow2', ...(options.length ? ['-o', options.join(',')] : []), file, '64M']);
  return file;
}

/** Host byte ranges that `qemu-img map` says the guest range [start, end) (default: all) maps to. */
async function hostRanges(file: string, guest: Range = { start: 0, end: Number.MAX_SAFE_INTEGER }): Promise<ExtentSet> {
  const { stdout } = await execa('qemu-img', ['map', '--output=json', '-f', 'qcow2', file]);
  const entries = JSON.parse(stdout) as { start: number; length: number; offset?: number }[];
  const ranges: Range[] = [];
  for (const e of entries) {
    const start = Math.max(e.start, guest.start);
    const end = Math.min(e.start + e.length, guest.end);
    if (e.offset !== undefined && end > start) ranges.push({ start: e.offset + start - e.start, end: e.offset + end - e.start });
  }
  return ExtentSet.from(ranges);
}

async function freeOf(file: string): Promise<FreeClusters> {
  const reader = await openFileReader(file);
  try {
    return await readFreeClusters(reader, reader.sizeBytes);
  } finally {
    await reader[Symbol.asyncDispose]();
  }
}

async function usableFreeOf(file: string): Promise<ExtentSet> {
  const res = await freeOf(file);
  if (!res.ok) throw new Error(`${file} refused: ${res.reason}`);
  expect(res.freeBytes).toBe(res.free.totalBytes);
  for (const r of res.free.ranges) expect([r.start % res.clusterSizeBytes, r.end % res.clusterSizeBytes]).toEqual([0, 0]);
  return res.free;
}

async function allocatedBytes(file: string): Promise<number> {
  return (await stat(file)).blocks * 512;
}

async function byteAt(file: string, offsetBytes: number): Promise<number> {
  const handle = await open(file, 'r');
  try {
    const { buffer } = await handle.read(Buffer.alloc(1), 0, 1, offsetBytes);
    return buffer[0]!;
  } finally {
    await handle.close();
  }
}

async function expectClean(file: string): Promise<void> {
  const res = await execa('qemu-img', ['check', '--output=json', '-f', 'qcow2', file], { reject: false });
  expect(res.exitCode, res.stdout + res.stderr).toBe(0);
  expect(JSON.parse(res.stdout)).toMatchObject({ 'check-errors': 0 });
}

/** The byte ranges of the host file that hold data (SEEK_DATA), as `qemu-img map` of the file as raw says. */
async function fileDataRanges(file: string): Promise<ExtentSet> {
  const { stdout } = await execa('qemu-img', ['map', '--output=json', '-f', 'raw', file]);
  const entries = JSON.parse(stdout) as { start: number; length: number; data: boolean }[];
  return ExtentSet.from(entries.filter((e) => e.data).map((e) => ({ start: e.start, end: e.start + e.length })));
}

/** Filesystem blocks lying wholly inside `set`. */
function wholeBlocksBytes(set: ExtentSet, blockBytes: number): number {
  let sum = 0;
  for (const r of set.ranges) sum += Math.max(0, Math.floor(r.end / blockBytes) - Math.ceil(r.start / blockBytes)) * blockBytes;
  return sum;
}

async function rawOfSnapshot(file: string, snapshot: string, out: string): Promise<string> {
  await execa('qemu-img', ['convert', '-f', 'qcow2', '-l', `snapshot.name=${snapshot}`, '-O', 'raw', file, out]);
  return out;
}

/**
 * The real use: punch `free` out of the file, then the image must still check clean, read the
 * same (active layer and snapshots) and report the same free clusters, and the file must have
 * shrunk by the written blocks wholly inside `free` (less the few blocks the filesystem may
 * spend on its extent tree when holes split extents: st_blocks counts those too). Returns those
 * written bytes.
 */
async function punchAndVerify(file: string, free: ExtentSet, blockBytes: number, snapshots: string[] = []): Promise<number> {
  await expectClean(file);
  const copy = `${file}.pre`;
  await copyFile(file, copy);
  const rawsBefore = await Promise.all(snapshots.map((s) => rawOfSnapshot(copy, s, `${copy}.${s}.raw`)));
  const before = await allocatedBytes(file);
  const writtenFreeBytes = wholeBlocksBytes(free.intersect(await fileDataRanges(file)), blockBytes);
  for (const r of free.ranges) {
    await execa('fallocate', ['--punch-hole', '--offset', String(r.start), '--length', String(r.end - r.start), file]);
  }
  await expectClean(file);
  await execa('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', copy, file]);
  for (const [i, s] of snapshots.entries()) {
    await execa('cmp', [rawsBefore[i]!, await rawOfSnapshot(file, s, `${file}.${s}.raw`)]);
  }
  expect((await usableFreeOf(file)).ranges).toEqual(free.ranges);
  const droppedBytes = before - (await allocatedBytes(file));
  expect(droppedBytes).toBeLessThanOrEqual(writtenFreeBytes);
  expect(droppedBytes).toBeGreaterThanOrEqual(writtenFreeBytes - 16 * blockBytes);
  return writtenFreeBytes;
}

describeIntegration('qcow2 free clusters from refcounts', { tools: ['qemu-img', 'qemu-io', 'qemu-storage-daemon', 'fallocate', 'cmp'] }, () => {
  let blockBytes: number;
  beforeAll(async () => {
    dir = await mkdtemp('/tmp/sparsify-qcow2-');
    blockBytes = Number((await execa('stat', ['-f', '-c', '%S', dir])).stdout);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['64k', ['cluster_size=65536']],
    ['512', ['cluster_size=512']],
    ['refcount1', ['refcount_bits=1']],
    ['refcount64', ['refcount_bits=64']],
    ['compat010', ['compat=0.10']],
    ['extended-l2', ['extended_l2=on', 'cluster_size=131072']],
  ])('reports exactly the clusters a qcow2-only discard freed (%s)', async (name, options) => {
    const file = await createQcow2(name, options);
    await qemuIo(file, 'write -P 0xab 0 10M');
    const discarded = await hostRanges(file, { start: 1 * MiB, end: 5 * MiB });
    expect(discarded.totalBytes).toBe(4 * MiB);
    const freeBefore = await usableFreeOf(file);
    expect(freeBefore.intersect(discarded).isEmpty).toBe(true);
    const allocatedBefore = await allocatedBytes(file);

    await discardInQcow2(file, 1 * MiB, 4 * MiB);
    expect(await allocatedBytes(file)).toBe(allocatedBefore);
    const free = await usableFreeOf(file);
    expect(free.subtract(freeBefore).ranges).toEqual(discarded.ranges);
    expect(free.intersect(await hostRanges(file)).isEmpty).toBe(true);
    for (const r of discarded.ranges) expect([await byteAt(file, r.start), await byteAt(file, r.end - 1)]).toEqual([0xab, 0xab]);

    const punchedBytes = await punchAndVerify(file, free, blockBytes);
    // With 512-byte clusters the freed runs are not block-aligned: only their whole blocks go.
    if (name !== '512') expect(punchedBytes).toBe(4 * MiB);
  });

  it('claims compressed clusters, including those that spill into the next cluster', async () => {
    // 16 KiB of noise then zeros per 64 KiB cluster: each compresses to a bit over 16 KiB, so
    // compressed clusters share host clusters and many straddle a host cluster boundary.
    const raw = join(dir, 'noise.raw');
    const pattern = Buffer.alloc(10 * MiB);
    for (let at = 0; at < pattern.length; at += 65536) randomBytes(16384).copy(pattern, at);
    await writeFile(raw, pattern);
    const file = join(dir, 'compressed.qcow2');
    await execa('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, file]);
    expect((await usableFreeOf(file)).totalBytes).toBe(0);

    await discardInQcow2(file, 2 * MiB, 4 * MiB);
    const free = await usableFreeOf(file);
    expect(free.totalBytes).toBeGreaterThan(512 * 1024);
    expect(free.totalBytes).toBeLessThan(2 * MiB);
    expect(await punchAndVerify(file, free, blockBytes)).toBeGreaterThan(0);
  });

  it('walks internal snapshots: clusters they still use are never free', async () => {
    const file = await createQcow2('snapshot', []);
    await qemuIo(file, 'write -P 0xab 0 10M');
    await execa('qemu-img', ['snapshot', '-c', 's1', file]);
    const shared = await hostRanges(file, { start: 1 * MiB, end: 5 * MiB });
    const freeBefore = await usableFreeOf(file);
    await discardInQcow2(file, 1 * MiB, 4 * MiB);
    expect((await usableFreeOf(file)).ranges).toEqual(freeBefore.ranges);

    await qemuIo(file, 'write -P 0xcd 20M 3M');
    const freeAfterWrite = await usableFreeOf(file);
    const discarded = await hostRanges(file, { start: 21 * MiB, end: 22 * MiB });
    await discardInQcow2(file, 21 * MiB, 1 * MiB);
    const free = await usableFreeOf(file);
    expect(free.subtract(freeAfterWrite).ranges).toEqual(discarded.ranges);
    expect(free.intersect(shared).isEmpty).toBe(true);
    expect(await punchAndVerify(file, free, blockBytes, ['s1'])).toBeGreaterThan(0);
  });

  it('keeps persistent bitmaps intact', async () => {
    const file = await createQcow2('bitmaps', []);
    await qemuIo(file, 'write -P 0xab 0 10M');
    await execa('qemu-img', ['bitmap', '--add', file, 'b0']);
    await execa('qemu-img', ['bitmap', '--add', '-g', '65536', file, 'b1']);
    await qemuIo(file, 'write -P 0xcd 30M 1M');
    await discardInQcow2(file, 1 * MiB, 4 * MiB);
    const free = await usableFreeOf(file);
    expect(free.totalBytes).toBeGreaterThan(0);
    expect(await punchAndVerify(file, free, blockBytes)).toBeGreaterThan(0);
    const { stdout } = await execa('qemu-img', ['info', '--output=json', file]);
    expect(JSON.stringify(JSON.parse(stdout)['format-specific'].data.bitmaps.map((b: { name: string }) => b.name))).toBe('["b0","b1"]');
  });

  it('counts the clusters past the last allocation of a grown file as free', async () => {
    const file = await createQcow2('grown', []);
    await qemuIo(file, 'write -P 0xab 0 1M');
    const sizeBefore = (await stat(file)).size;
    await truncate(file, sizeBefore + 3 * MiB);
    const free = await usableFreeOf(file);
    expect(free.ranges).toEqual([{ start: sizeBefore, end: sizeBefore + 3 * MiB }]);
    expect(await punchAndVerify(file, free, blockBytes)).toBe(0); // truncate made a hole
  });

  it('refuses a truncated file, and rejects one too short for a header', async () => {
    const file = await createQcow2('truncated', []);
    await qemuIo(file, 'write -P 0xab 0 10M');
    await truncate(file, 5 * MiB);
    expect(await freeOf(file)).toEqual({ ok: false, reason: expect.stringMatching(/lie outside the 5242880-byte file/) });
    await truncate(file, 100);
    const err = await freeOf(file).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'BAD_IMAGE')).toBe(true);
  });

  it('refuses a lazy-refcounts image left dirty by a killed writer; its refcounts really are stale', async () => {
    // qemu may mark the image clean again between our look and the kill: then try once more.
    let file = '';
    for (let attempt = 0; attempt < 3; attempt++) {
      file = await createQcow2(`dirty${attempt}`, ['lazy_refcounts=on']);
      const writer = spawn('qemu-io', ['-f', 'qcow2', file], { stdio: ['pipe', 'ignore', 'ignore'] });
      const exited = new Promise((resolve) => writer.once('exit', resolve));
      writer.stdin.write('write -P 0xab 0 1M\n');
      const deadline = Date.now() + 15_000;
      while (!((await byteAt(file, 79)) & 1)) {
        if (Date.now() > deadline) throw new Error('qemu-io never set the dirty bit');
        await sleep(50);
      }
      writer.kill('SIGKILL');
      await exited;
      if ((await byteAt(file, 79)) & 1) break;
    }
    expect(await freeOf(file)).toEqual({ ok: false, reason: expect.stringMatching(/dirty bit set/) });

    // Clear the dirty bit by hand: the cross-check alone must then catch the stale refcounts.
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([0]), 0, 1, 79);
    await handle.close();
    expect(await freeOf(file)).toEqual({ ok: false, reason: expect.stringMatching(/^refcounts disagree with the L1\/L2 tables at cluster \d+/) });
  });

  it('reads the same through qemu-storage-daemon over NBD', async () => {
    const file = await createQcow2('nbd', ['cluster_size=4096']);
    await qemuIo(file, 'write -P 0xab 0 10M');
    await execa('qemu-img', ['snapshot', '-c', 's1', file]);
    await discardInQcow2(file, 1 * MiB, 4 * MiB);
    await qemuIo(file, 'write -P 0xcd 20M 3M');
    await discardInQcow2(file, 21 * MiB, 1 * MiB);
    const expected = await usableFreeOf(file);
    expect(expected.totalBytes).toBeGreaterThan(0);
    const fileSizeBytes = (await stat(file)).size;
    await using served = await serveImage(ctx, { file, format: 'raw', readOnly: true, discard: false, dir });
    await using client = await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName });
    const res = await readFreeClusters(client, fileSizeBytes);
    expect(res.ok && res.free.ranges).toEqual(expected.ranges);
  });
});
