/**
 * readFatFreeMap and readSwapFreeMap against volumes made by mkfs.fat, mtools and mkswap. The
 * truth is what the tools say: fsck.fat's count of used clusters, fsck.fat staying clean and
 * every file reading back the same (mcopy, sha256) after every "free" byte was zeroed, blkid's
 * label and UUID. The dirty flag and differing FAT copies are cross-checked with fsck.fat.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isAllZero } from '../../src/binary/bytes.js';
import type { ExtentSet } from '../../src/disk/extent-set.js';
import { openFileReader } from '../helpers/file-reader.js';
import { readFatFreeMap } from '../../src/fs/fat/free-map.js';
import { readSwapFreeMap } from '../../src/fs/swap/free-map.js';
import type { FreeMap } from '../../src/fs/types.js';
import { prng, randInt } from '../helpers/copy-fakes.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const KiB = 1024;
/** mtools refuses some geometries of images that are not floppies unless told not to check. */
const ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

let tmp = '';

function run(file: string, args: readonly string[]): { status: number; out: string } {
  const r = spawnSync(file, args, { encoding: 'utf8', env: ENV, maxBuffer: 64 * MiB });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function ok(file: string, args: readonly string[]): string {
  const r = run(file, args);
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status}: ${r.out}`);
  return r.out;
}

async function freeMapOf(path: string, read: typeof readFatFreeMap): Promise<FreeMap> {
  await using reader = await openFileReader(path);
  return await read(reader);
}

function trusted(map: FreeMap): Extract<FreeMap, { trusted: true }> {
  if (!map.trusted) throw new Error(`expected a trusted map, got: ${map.reason}`);
  return map;
}

/** Writes zeros over every range of `free` in the file at `path`. */
async function zeroRanges(path: string, free: ExtentSet): Promise<void> {
  const zeros = new Uint8Array(MiB);
  const handle = await open(path, 'r+');
  try {
    for (const r of free.ranges) {
      for (let at = r.start; at < r.end; at += zeros.length) {
        await handle.write(zeros, 0, Math.min(zeros.length, r.end - at), at);
      }
    }
  } finally {
    await handle.close();
  }
}

/** Whether any byte of `free` in the file is not zero (deleted files left data behind). */
async function anyDataIn(path: string, free: ExtentSet): Promise<boolean> {
  await using reader = await openFileReader(path);
  for (const r of free.ranges) {
    if (!isAllZero(await reader.read(r.start, Math.min(r.end - r.start, 4 * MiB)))) return true;
  }
  return false;
}

function copyImage(from: string, to: string): string {
  ok('cp', ['--sparse=always', from, to]);
  return to;
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** How much to write: a first batch (a third of it deleted afterwards), then a second batch. */
interface Fill {
  readonly firstCount: number;
  readonly firstMaxBytes: number;
  readonly secondCount: number;
  readonly secondMaxBytes: number;
}

/** Fills the volume with files, deletes some, adds more; returns path → sha256 of what is left. */
async function fillVolume(img: string, dir: string, fill: Fill, seed: number): Promise<Map<string, string>> {
  const rand = prng(seed);
  const files = new Map<string, string>();
  await mkdir(join(dir, 'sub'), { recursive: true });
  ok('mmd', ['-i', img, '::/sub']);
  const batch = async (prefix: string, count: number, maxBytes: number): Promise<string[]> => {
    const names: string[] = [];
    for (let i = 0; i < count; i++) {
      const size = i === 0 ? 0 : i === 1 ? 1 : randInt(rand, 1, maxBytes);
      const name = `${i % 4 === 3 ? 'sub/' : ''}${prefix}-${String(i).padStart(3, '0')}.bin`;
      const data = randomBytes(size);
      await writeFile(join(dir, name), data);
      files.set(name, sha256(data));
      names.push(name);
    }
    for (const where of ['', 'sub/']) {
      const here = names.filter((n) => (where ? n.startsWith(where) : !n.includes('/')));
      ok('mcopy', ['-i', img, ...here.map((n) => join(dir, n)), `::/${where}`]);
    }
    return names;
  };
  const first = await batch('first', fill.firstCount, fill.firstMaxBytes);
  const gone = first.filter((_, i) => i % 3 === 2);
  ok('mdel', ['-i', img, ...gone.map((n) => `::/${n}`)]);
  gone.forEach((n) => files.delete(n));
  await batch('second', fill.secondCount, fill.secondMaxBytes);
  return files;
}

/** fsck.fat -n -v: exit status, cluster size, and "N files, USED/TOTAL clusters". */
function fsck(img: string): { status: number; out: string; clusterBytes: number; used: number; total: number } {
  const { status, out } = run('fsck.fat', ['-n', '-v', img]);
  const size = /(\d+) bytes per cluster/.exec(out);
  const counts = /(\d+) files, (\d+)\/(\d+) clusters/.exec(out);
  if (!size || !counts) throw new Error(`unexpected fsck.fat output: ${out}`);
  return { status, out, clusterBytes: Number(size[1]), used: Number(counts[2]), total: Number(counts[3]) };
}

/** Copies every file out of the volume and checks it against `files`. */
async function expectFiles(img: string, files: Map<string, string>, outDir: string): Promise<void> {
  await mkdir(outDir);
  ok('mcopy', ['-s', '-n', '-i', img, '::/*', outDir]);
  const found = new Map<string, string>();
  for (const entry of await readdir(outDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    found.set(relative(outDir, path), sha256(await readFile(path)));
  }
  expect(found).toEqual(files);
}

const CASES = [
  {
    type: 'FAT12',
    bits: '12',
    sizeBytes: 4 * MiB,
    fill: { firstCount: 30, firstMaxBytes: 120 * KiB, secondCount: 8, secondMaxBytes: 200 * KiB },
  },
  {
    type: 'FAT16',
    bits: '16',
    sizeBytes: 64 * MiB,
    fill: { firstCount: 60, firstMaxBytes: 1.5 * MiB, secondCount: 10, secondMaxBytes: 2 * MiB },
  },
  {
    type: 'FAT32',
    bits: '32',
    sizeBytes: 300 * MiB,
    fill: { firstCount: 80, firstMaxBytes: 4 * MiB, secondCount: 15, secondMaxBytes: 6 * MiB },
  },
] as const;

/** BS_Reserved1, where Linux keeps its dirty flag: fatgen103 §3.2 (FAT12/16) and §3.3 (FAT32). */
const DIRTY_BYTE = { FAT12: 37, FAT16: 37, FAT32: 65 } as const;

describeIntegration('FAT and swap free maps against mkfs.fat, mtools and mkswap', {
  tools: ['mkfs.fat', 'fsck.fat', 'mcopy', 'mdel', 'mmd', 'mkswap', 'blkid', 'cp', 'truncate'],
}, () => {
  beforeAll(async () => {
    tmp = await mkdtemp('/tmp/sparsify-fat-');
  });
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it.each(CASES)('$type: the free map is exactly what fsck.fat counts, and zeroing it loses nothing', async (c) => {
    const img = join(tmp, `${c.type}.img`);
    ok('truncate', ['-s', String(c.sizeBytes), img]);
    ok('mkfs.fat', ['-F', c.bits, '-n', 'SPARSIFY', img]);
    const files = await fillVolume(img, join(tmp, `${c.type}-in`), c.fill, c.sizeBytes);

    const before = fsck(img);
    expect(before.status).toBe(0);
    const map = trusted(await freeMapOf(img, readFatFreeMap));
    expect(map.detail).toMatch(new RegExp(`^${c.type}: \\d+ of ${before.total} clusters free`));
    expect(map.unitBytes).toBe(before.clusterBytes);
    expect(map.counterFreeBytes).toBe((before.total - before.used) * before.clusterBytes);
    expect(map.free.totalBytes).toBe(map.counterFreeBytes);
    expect(map.free.ranges.length).toBeGreaterThan(3); // deleted files left holes between files
    expect(await anyDataIn(img, map.free)).toBe(true); // so zeroing changes the image

    const zeroed = copyImage(img, join(tmp, `${c.type}-zeroed.img`));
    await zeroRanges(zeroed, map.free);
    const after = fsck(zeroed);
    expect(after.status, after.out).toBe(0);
    expect(after.used).toBe(before.used);
    await expectFiles(zeroed, files, join(tmp, `${c.type}-out`));

    const dirty = copyImage(img, join(tmp, `${c.type}-dirty.img`));
    const handle = await open(dirty, 'r+');
    await handle.write(Uint8Array.of(0x01), 0, 1, DIRTY_BYTE[c.type]);
    await handle.close();
    expect(fsck(dirty).out).toMatch(/Dirty bit is set/);
    expect(await freeMapOf(dirty, readFatFreeMap)).toMatchObject({ trusted: false, reason: /dirty flag/ });
  });

  it.each(CASES.slice(0, 2))('$type: FAT copies that differ are untrusted, as fsck.fat says', async (c) => {
    const img = join(tmp, `${c.type}-mirror.img`);
    ok('truncate', ['-s', String(c.sizeBytes), img]);
    ok('mkfs.fat', ['-F', c.bits, img]);
    const boot = await readFile(img).then((b) => new DataView(b.buffer, b.byteOffset, 64));
    const secondFat = (boot.getUint16(14, true) + boot.getUint16(22, true)) * boot.getUint16(11, true);
    const handle = await open(img, 'r+');
    await handle.write(Uint8Array.of(0xff, 0xff), 0, 2, secondFat + 16); // free cluster entries
    await handle.close();
    expect(fsck(img).out).toMatch(/FATs differ/);
    expect(await freeMapOf(img, readFatFreeMap)).toMatchObject({ trusted: false, reason: /FAT copies differ/ });
  });

  it('swap: all but the first page is free, and zeroing it keeps the label and UUID', async () => {
    const img = join(tmp, 'swap.img');
    const sizeBytes = 64 * MiB;
    await writeFile(img, randomBytes(sizeBytes));
    ok('mkswap', ['-L', 'sparsify-swap', '-U', '0b5c1f5e-1c7e-4d7b-9a57-3f0f6a8e9c21', img]);
    const identity = ok('blkid', ['-p', '-o', 'export', '-s', 'TYPE', '-s', 'LABEL', '-s', 'UUID', img]);
    expect(identity).toMatch(/TYPE=swap/);

    const map = trusted(await freeMapOf(img, readSwapFreeMap));
    expect(map.free.ranges).toEqual([{ start: 4096, end: sizeBytes }]);
    expect(map.counterFreeBytes).toBe(sizeBytes - 4096);

    const zeroed = copyImage(img, join(tmp, 'swap-zeroed.img'));
    await zeroRanges(zeroed, map.free);
    expect(ok('blkid', ['-p', '-o', 'export', '-s', 'TYPE', '-s', 'LABEL', '-s', 'UUID', zeroed])).toBe(
      identity.replace(img, zeroed),
    );
    const [original, after] = await Promise.all([readFile(img), readFile(zeroed)]);
    expect(sha256(after.subarray(0, 4096))).toBe(sha256(original.subarray(0, 4096)));
    expect(isAllZero(after.subarray(4096))).toBe(true);

    const hibernated = copyImage(img, join(tmp, 'swap-hibernated.img'));
    const handle = await open(hibernated, 'r+');
    await handle.write(new TextEncoder().encode('S1SUSPEND\0'), 0, 10, 4086);
    await handle.close();
    expect(ok('blkid', ['-p', '-o', 'export', '-s', 'TYPE', hibernated])).toMatch(/TYPE=swsuspend/);
    expect(await freeMapOf(hibernated, readSwapFreeMap)).toEqual({
      trusted: false,
      reason: 'swap holds a hibernation image',
    });
  });
});
