/**
 * readNtfsFreeMap against volumes made by mkntfs and filled through ntfs-3g. The truth is what
 * ntfs-3g's tools say: the bits of $Bitmap as ntfscat reads them, the free cluster counts of
 * ntfsinfo and ntfscluster, ntfsresize's own cluster accounting (it walks every MFT record and
 * refuses a $Bitmap that disagrees), and every file reading back the same through ntfs-3g after
 * every "free" byte was zeroed. A fragmented $Bitmap is made by ntfsresize; the dirty flag by
 * ntfsfix; a hibernated Windows by a hiberfil.sys that ntfs-3g itself refuses.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ExtentSet, type Range } from '../../src/disk/extent-set.js';
import { openFileReader } from '../helpers/file-reader.js';
import { readNtfsFreeMap } from '../../src/fs/ntfs/free-map.js';
import type { FreeMap } from '../../src/fs/types.js';
import { prng, randInt } from '../helpers/copy-fakes.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const MOUNT_WAIT_MS = 15_000;

let tmp = '';
/** ntfs-3g processes this file started and has not seen exit, with their mount points. */
const daemons = new Map<ChildProcess, string>();

function run(file: string, args: readonly string[]): { status: number; out: string; stdout: Buffer } {
  const r = spawnSync(file, args, { maxBuffer: 256 * MiB });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, out: `${r.stdout.toString()}${r.stderr.toString()}`, stdout: r.stdout };
}

function ok(file: string, args: readonly string[]): string {
  const r = run(file, args);
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status}: ${r.out}`);
  return r.out;
}

async function makeNtfs(name: string, sizeBytes: number, clusterBytes: number): Promise<string> {
  const path = join(tmp, name);
  await writeFile(path, '');
  await truncate(path, sizeBytes);
  ok('mkntfs', ['-q', '-F', '-Q', '-c', String(clusterBytes), path]);
  return path;
}

function copyImage(from: string, name: string): string {
  const to = join(tmp, name);
  ok('cp', ['--sparse=always', from, to]);
  return to;
}

async function isMounted(mountPoint: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => line.split(' ')[4] === mountPoint);
}

/**
 * Mounts `image` with ntfs-3g in the foreground (no_detach) so that its exit, which comes after
 * it has written everything back, can be awaited after the unmount. Returns what it printed.
 */
async function withNtfs3g(image: string, options: string, body: (mnt: string) => Promise<void>): Promise<string> {
  const mnt = await mkdtemp(join(tmp, 'mnt-'));
  const daemon = spawn('ntfs-3g', [image, mnt, '-o', `no_detach${options ? `,${options}` : ''}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  daemons.set(daemon, mnt);
  let output = '';
  daemon.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  daemon.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => (daemons.delete(daemon), resolve())));
  const deadline = Date.now() + MOUNT_WAIT_MS;
  while (!(await isMounted(mnt))) {
    if (daemon.exitCode !== null || Date.now() > deadline) throw new Error(`ntfs-3g did not mount ${image}: ${output}`);
    await sleep(50);
  }
  try {
    await body(mnt);
  } finally {
    ok('umount', [mnt]);
    await exited;
    await rm(mnt, { recursive: true });
  }
  return output;
}

async function freeMapOf(path: string): Promise<FreeMap> {
  await using reader = await openFileReader(path);
  return await readNtfsFreeMap(reader);
}

function trusted(map: FreeMap): Extract<FreeMap, { trusted: true }> {
  if (!map.trusted) throw new Error(`expected a trusted map, got: ${map.reason}`);
  return map;
}

/** What ntfsinfo -m says: clusters of the volume and free clusters (counted by libntfs-3g from $Bitmap). */
function ntfsinfo(path: string): { clusters: number; free: number } {
  const out = ok('ntfsinfo', ['-m', path]);
  const field = (name: string): number => Number(new RegExp(`${name}:\\s*(\\d+)`).exec(out)?.[1] ?? NaN);
  return { clusters: field('Volume Size in Clusters'), free: field('Free Clusters') };
}

/** ntfscluster's "clusters of free space". */
function ntfsclusterFree(path: string): number {
  return Number(/clusters of free space\s*:\s*(\d+)/.exec(ok('ntfscluster', [path]))?.[1] ?? NaN);
}

/** The free bytes of $Bitmap as ntfscat reads the file, bit by bit. */
function bitmapFreeBytes(path: string, clusters: number, clusterBytes: number): ExtentSet {
  const bitmap = run('ntfscat', [path, '$Bitmap']).stdout;
  const runs: Range[] = [];
  let start = -1;
  for (let c = 0; c <= clusters; c++) {
    const free = c < clusters && ((bitmap[c >> 3]! >> (c & 7)) & 1) === 0;
    if (free && start < 0) start = c;
    if (!free && start >= 0) {
      runs.push({ start: start * clusterBytes, end: c * clusterBytes });
      start = -1;
    }
  }
  return ExtentSet.from(runs);
}

/** "Total runs: N" of $Bitmap's $DATA in ntfsinfo's dump of record 6. */
function bitmapRunCount(path: string): number {
  return Number(/Total runs: (\d+)/.exec(ok('ntfsinfo', ['-v', '-i', '6', path]))?.[1] ?? NaN);
}

async function zeroRanges(path: string, free: ExtentSet): Promise<void> {
  const zeros = new Uint8Array(MiB);
  const handle = await open(path, 'r+');
  try {
    for (const r of free.ranges) {
      for (let at = r.start; at < r.end; at += zeros.length) await handle.write(zeros, 0, Math.min(zeros.length, r.end - at), at);
    }
  } finally {
    await handle.close();
  }
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Writes files of random sizes (resident ones too), deletes every third, writes more; returns name → sha256. */
async function fill(mnt: string, seed: number, count: number, maxBytes: number): Promise<Map<string, string>> {
  const rand = prng(seed);
  const files = new Map<string, string>();
  await mkdir(join(mnt, 'sub'));
  const batch = async (prefix: string): Promise<string[]> => {
    const names: string[] = [];
    for (let i = 0; i < count; i++) {
      const name = `${i % 4 === 3 ? 'sub/' : ''}${prefix}-${i}.bin`;
      const data = randomBytes(i % 5 === 0 ? randInt(rand, 0, 600) : randInt(rand, 1, maxBytes));
      await writeFile(join(mnt, name), data);
      files.set(name, sha256(data));
      names.push(name);
    }
    return names;
  };
  for (const [i, name] of (await batch('first')).entries()) {
    if (i % 3 !== 2) continue;
    await rm(join(mnt, name));
    files.delete(name);
  }
  await batch('second');
  return files;
}

async function readAll(mnt: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const dir of ['', 'sub']) {
    for (const entry of await readdir(join(mnt, dir), { withFileTypes: true })) {
      const name = dir ? `${dir}/${entry.name}` : entry.name;
      if (entry.isFile()) files.set(name, sha256(await readFile(join(mnt, name))));
    }
  }
  return files;
}

/** Makes `count` small files in the root so its $I30 index needs INDX blocks. */
async function crowdRoot(mnt: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await writeFile(join(mnt, `a-file-with-a-long-name-${i}.txt`), `${i}\n`);
}

describeIntegration(
  'readNtfsFreeMap on volumes made by mkntfs and ntfs-3g',
  { root: true, tools: ['mkntfs', 'ntfs-3g', 'ntfscluster', 'ntfsinfo', 'ntfscat', 'ntfsresize', 'ntfsfix'] },
  () => {
    beforeAll(async () => {
      tmp = await mkdtemp('/tmp/sparsify-ntfs-');
    });

    afterAll(async () => {
      // Only after a failed test: unmount before removing the directory that holds the mount point.
      for (const [daemon, mnt] of daemons) {
        run('umount', ['-l', mnt]);
        daemon.kill('SIGTERM');
      }
      if (tmp) await rm(tmp, { recursive: true, force: true });
    });

    it.each([
      [4096, 192 * MiB, 40, 3 * MiB],
      [512, 48 * MiB, 40, 512 * KiB],
      [65536, 384 * MiB, 30, 4 * MiB],
    ])('frees exactly the clear bits of $Bitmap on %i-byte clusters, and every file survives zeroing them', async (cb, size, count, maxBytes) => {
      const img = await makeNtfs(`c${cb}.img`, size, cb);
      let files = new Map<string, string>();
      await withNtfs3g(img, '', async (mnt) => void (files = await fill(mnt, cb, count, maxBytes)));
      const map = trusted(await freeMapOf(img));
      const info = ntfsinfo(img);
      expect(map.unitBytes).toBe(cb);
      expect(map.free.ranges).toEqual(bitmapFreeBytes(img, info.clusters, cb).ranges);
      expect(map.counterFreeBytes / cb).toBe(info.free);
      expect(map.counterFreeBytes / cb).toBe(ntfsclusterFree(img));
      expect(map.free.ranges.at(-1)!.end).toBeLessThanOrEqual(info.clusters * cb);
      expect(run('ntfsresize', ['--info', '--force', '--no-progress-bar', img]).status).toBe(0);

      await zeroRanges(img, map.free);
      await withNtfs3g(img, 'ro', async (mnt) => expect(await readAll(mnt)).toEqual(files));
      expect(trusted(await freeMapOf(img)).free.ranges).toEqual(map.free.ranges);
    });

    it('reads a $Bitmap that ntfsresize fragmented, and does not trust it before the dirty flag ntfsresize sets is cleared', async () => {
      // 65536 one-sector clusters: a 16-cluster $Bitmap. Fill until no free run can hold 17 clusters,
      // then grow the volume by one cluster: the $Bitmap needs a 17th cluster and ntfsresize, which
      // reallocates it first-fit, has to split it.
      const img = await makeNtfs('fragmented.img', (65536 + 1) * 512, 512);
      await withNtfs3g(img, '', async (mnt) => {
        for (const round of ['a', 'b', 'c', 'd']) {
          const names: string[] = [];
          try {
            for (let i = 0; ; i++) {
              await writeFile(join(mnt, `${round}${i}`), Buffer.alloc(1024, 0x5a));
              names.push(`${round}${i}`);
            }
          } catch (err) {
            if ((err as { code?: string }).code !== 'ENOSPC') throw err;
          }
          for (let i = 0; i < names.length; i += 2) await rm(join(mnt, names[i]!));
        }
      });
      const before = bitmapFreeBytes(img, 65536, 512);
      expect(Math.max(...before.ranges.map((r) => r.end - r.start)) / 512).toBeLessThan(17);
      await truncate(img, (65537 + 1) * 512);
      ok('ntfsresize', ['--force', '--force', '--no-progress-bar', img]);

      expect(await freeMapOf(img)).toEqual({ trusted: false, reason: expect.stringMatching(/dirty flag/) });
      ok('ntfsfix', ['-d', img]);
      expect(bitmapRunCount(img)).toBeGreaterThanOrEqual(2);
      const map = trusted(await freeMapOf(img));
      const info = ntfsinfo(img);
      expect(info.clusters).toBe(65537);
      expect(map.detail).toMatch(/\$Bitmap in [2-9] runs/);
      expect(map.free.ranges).toEqual(bitmapFreeBytes(img, info.clusters, 512).ranges);
      expect(map.counterFreeBytes / 512).toBe(info.free);
    });

    it('does not trust a volume ntfsfix marked dirty, and trusts it again once the flag is cleared', async () => {
      const img = await makeNtfs('dirty.img', 64 * MiB, 4096);
      await withNtfs3g(img, '', async (mnt) => void (await fill(mnt, 3, 10, MiB)));
      const clean = trusted(await freeMapOf(img));
      ok('ntfsfix', [img]);
      expect(await freeMapOf(img)).toEqual({ trusted: false, reason: expect.stringMatching(/dirty flag is set/) });
      ok('ntfsfix', ['-d', img]);
      expect(trusted(await freeMapOf(img)).free.ranges).toEqual(clean.free.ranges);
    });

    it('does not trust a volume whose hiberfil.sys starts with HIBR, found among INDX blocks of a crowded root', async () => {
      const base = await makeNtfs('root.img', 64 * MiB, 4096);
      await withNtfs3g(base, '', (mnt) => crowdRoot(mnt, 300));
      expect(ok('ntfsinfo', ['-i', '5', base])).toContain('$INDEX_ALLOCATION');

      const cleared = copyImage(base, 'hiberfil-cleared.img');
      await withNtfs3g(cleared, '', (mnt) => writeFile(join(mnt, 'hiberfil.sys'), Buffer.alloc(8192)));
      expect(trusted(await freeMapOf(cleared)).unitBytes).toBe(4096);

      const hibernated = copyImage(base, 'hiberfil-hibr.img');
      const header = Buffer.concat([Buffer.from('HIBR'), Buffer.alloc(8188)]);
      await withNtfs3g(hibernated, '', (mnt) => writeFile(join(mnt, 'hiberfil.sys'), header));
      expect(await freeMapOf(hibernated)).toEqual({ trusted: false, reason: expect.stringMatching(/hiberfil.sys starts with "HIBR"/) });
      // ntfs-3g agrees: it refuses a read-write mount of the same image.
      const said = await withNtfs3g(hibernated, '', async () => {});
      expect(said).toContain('Windows is hibernated');
    });
  },
);
