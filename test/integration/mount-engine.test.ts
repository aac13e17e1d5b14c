import { createHash, randomFillSync } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext, silentLogger, type RunContext } from '../../src/context.js';
import { trimByMount } from '../../src/engines/mount/trim.js';
import { openLoopDevice } from '../../src/host/loop.js';
import { openMount, readMounts } from '../../src/host/mounts.js';
import { zeroFillFreeSpace } from '../../src/engines/mount/zero-fill.js';
import type { Volume } from '../../src/layout/types.js';
import { createImage } from '../../src/qemu/img.js';
import { serveImage, type ServedImage } from '../../src/qemu/storage-daemon.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const BLOCK = 4096;
const CLUSTER = 65536;
const DISK_BYTES = 400 * MiB;
/** mkfs.xfs refuses filesystems under 300 MB. */
const VOLUME: Volume = { name: '/dev/sda1', offsetBytes: MiB, sizeBytes: 320 * MiB, kind: 'partition', partitionNumber: 1 };
/** Every 4 KiB block of the deleted file starts with this, so its blocks can be found on disk afterwards. */
const MARKER = Buffer.from('SPARSIFY-DELETED-FILE-BLOCK');
const ctx = makeContext();
let dir: string;

type FixtureFs = 'ext4' | 'xfs' | 'ntfs' | 'vfat' | 'btrfs' | 'ntfs-hibernated';

interface Fixture {
  readonly base: string;
  readonly sha256: string;
  /** 64 KiB clusters of the disk that lay entirely inside the deleted file. */
  readonly freedClusters: readonly number[];
}
const fixtures = new Map<string, Promise<Fixture>>();

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** Fills the mounted filesystem with a kept file and a 100 MiB file of marked blocks, then deletes the latter. */
async function writeAndDelete(mnt: string): Promise<void> {
  await writeFile(join(mnt, 'keep.txt'), 'keep me\n');
  const fh = await open(join(mnt, 'big'), 'w');
  const buf = Buffer.alloc(MiB);
  for (let i = 0; i < 100; i++) {
    randomFillSync(buf);
    for (let b = 0; b < MiB; b += BLOCK) MARKER.copy(buf, b);
    await fh.write(buf);
  }
  await fh.sync();
  await fh.close();
  await rm(join(mnt, 'big'));
  await execa('sync');
}

async function buildFixture(fs: FixtureFs): Promise<Fixture> {
  const fdir = join(dir, `fixture-${fs}`);
  await mkdir(join(fdir, 'mnt'), { recursive: true });
  const base = join(fdir, 'base.raw');
  await open(base, 'w').then((f) => f.close());
  await truncate(base, DISK_BYTES);
  await using loop = await openLoopDevice(ctx, { file: base, offsetBytes: VOLUME.offsetBytes, sizeBytes: VOLUME.sizeBytes, readOnly: false });
  const mkfs: Record<FixtureFs, string[]> = {
    // 4 KiB blocks: under 512 MB mke2fs picks 1 KiB blocks, which would not line up with the 4 KiB markers.
    ext4: ['mkfs.ext4', '-q', '-F', '-b', '4096'],
    xfs: ['mkfs.xfs', '-q', '-f'],
    ntfs: ['mkntfs', '-q', '-F', '-Q'],
    'ntfs-hibernated': ['mkntfs', '-q', '-F', '-Q'],
    vfat: ['mkfs.vfat'],
    btrfs: ['mkfs.btrfs', '-q', '-f'],
  };
  const [tool, ...args] = mkfs[fs];
  await execa(tool!, [...args, loop.path]);
  if (fs !== 'vfat') {
    const fsType = fs.startsWith('ntfs') ? 'ntfs-3g' : fs;
    await using m = await openMount(ctx, { device: loop.path, mountPoint: join(fdir, 'mnt'), fsType, options: [] });
    await writeAndDelete(m.mountPoint);
    // What ntfs-3g looks for to tell that Windows is hibernated: a hiberfil.sys starting "HIBR".
    if (fs === 'ntfs-hibernated') await writeFile(join(m.mountPoint, 'hiberfil.sys'), Buffer.concat([Buffer.from('HIBR'), Buffer.alloc(8188, 1)]));
  }
  return { base, sha256: await sha256(base), freedClusters: await findFreedClusters(base) };
}

async function findFreedClusters(base: string): Promise<number[]> {
  const data = await readFile(base);
  const clusters: number[] = [];
  for (let c = VOLUME.offsetBytes; c < VOLUME.offsetBytes + VOLUME.sizeBytes; c += CLUSTER) {
    let all = true;
    for (let b = c; b < c + CLUSTER && all; b += BLOCK) all = data.subarray(b, b + MARKER.length).equals(MARKER);
    if (all) clusters.push(c);
  }
  return clusters;
}

function fixture(fs: FixtureFs): Promise<Fixture> {
  let f = fixtures.get(fs);
  if (!f) fixtures.set(fs, (f = buildFixture(fs)));
  return f;
}

/** A fresh qcow2 overlay over the fixture, served with discard and detect-zeroes like copy mode does. */
async function serveOverlay(fx: Fixture, name: string): Promise<{ overlay: string; served: ServedImage }> {
  const overlay = join(dir, `${name}.qcow2`);
  await createImage(ctx, { path: overlay, format: 'qcow2', sizeBytes: DISK_BYTES, options: ['compat=1.1'], backing: { path: fx.base, format: 'raw' } });
  const served = await serveImage(ctx, { file: overlay, format: 'qcow2', readOnly: false, discard: true, detectZeroes: 'unmap', fuse: true, dir });
  return { overlay, served };
}

/** How many of `clusters` do not read back as zeros through the FUSE file. */
async function nonZeroClusters(fuseFile: string, clusters: readonly number[]): Promise<number> {
  const fh = await open(fuseFile, 'r');
  const buf = Buffer.alloc(CLUSTER);
  let bad = 0;
  try {
    for (const c of clusters) {
      await fh.read(buf, 0, CLUSTER, c);
      if (!buf.every((b) => b === 0)) bad++;
    }
  } finally {
    await fh.close();
  }
  return bad;
}

/** Clusters that `qemu-img map` does not show as zero in the overlay. */
async function unmappedAsZero(overlay: string, clusters: readonly number[]): Promise<number> {
  const { stdout } = await execa('qemu-img', ['map', '--output=json', '-f', 'qcow2', overlay]);
  const map = JSON.parse(stdout) as { start: number; length: number; zero: boolean }[];
  return clusters.filter((c) => !map.some((e) => e.start <= c && c + CLUSTER <= e.start + e.length && e.zero)).length;
}

async function leftovers(): Promise<string[]> {
  const mounts = (await readMounts()).map((m) => m.mountPoint).filter((p) => p.startsWith(dir));
  const { stdout } = await execa('losetup', ['-a']);
  return [...mounts, ...stdout.split('\n').filter((l) => l.includes(dir))];
}

async function expectTrimmed(fs: 'ext4' | 'xfs' | 'ntfs' | 'btrfs', method: 'fstrim' | 'zero-fill'): Promise<void> {
  const fx = await fixture(fs);
  expect(fx.freedClusters.length).toBeGreaterThan(1400);
  const { overlay, served } = await serveOverlay(fx, `trim-${fs}`);
  try {
    expect(await nonZeroClusters(served.fuseFile!, fx.freedClusters)).toBe(fx.freedClusters.length);
    const outcome = await trimByMount(ctx, { fuseFile: served.fuseFile!, volume: VOLUME, fs: { type: fs }, workDir: dir });
    expect(outcome).toMatchObject({ status: 'trimmed', method });
    if (outcome.status === 'trimmed') expect(outcome.trimmedBytes).toBeGreaterThan(100 * MiB);
    expect(await nonZeroClusters(served.fuseFile!, fx.freedClusters)).toBe(0);
  } finally {
    await served[Symbol.asyncDispose]();
  }
  expect(await unmappedAsZero(overlay, fx.freedClusters)).toBe(0);
  expect(await sha256(fx.base)).toBe(fx.sha256);
  expect(await leftovers()).toEqual([]);
}

describeIntegration(
  'mount engine',
  { root: true, tools: ['qemu-img', 'qemu-storage-daemon', 'nbdfuse', 'losetup', 'mount', 'fstrim', 'mkfs.ext4', 'mkfs.xfs', 'mkntfs', 'ntfs-3g', 'mkfs.vfat', 'mkfs.btrfs'] },
  () => {
    beforeAll(async () => {
      dir = await mkdtemp('/tmp/sparsify-qemu-');
    });
    afterAll(async () => {
      expect(await leftovers()).toEqual([]);
      await rm(dir, { recursive: true, force: true });
    });

    it('trims a deleted file out of ext4', () => expectTrimmed('ext4', 'fstrim'));
    it('trims a deleted file out of xfs', () => expectTrimmed('xfs', 'fstrim'));
    it('trims a deleted file out of ntfs through ntfs-3g', () => expectTrimmed('ntfs', 'fstrim'));
    it('trims a deleted file out of btrfs', () => expectTrimmed('btrfs', 'fstrim'));

    it('zero-fills free space into zero clusters (the fallback where fstrim is unsupported)', async () => {
      const fx = await fixture('ext4');
      const { overlay, served } = await serveOverlay(fx, 'zero-fill');
      try {
        await using loop = await openLoopDevice(ctx, { file: served.fuseFile!, offsetBytes: VOLUME.offsetBytes, sizeBytes: VOLUME.sizeBytes, readOnly: false });
        await mkdir(join(dir, 'zf'));
        {
          await using m = await openMount(ctx, { device: loop.path, mountPoint: join(dir, 'zf'), fsType: 'ext4', options: [] });
          expect(await zeroFillFreeSpace(ctx, m.mountPoint)).toBeGreaterThan(100 * MiB);
        }
        // Not all: ext4 keeps up to 2% of its blocks for metadata even from root, and delayed
        // allocation reports ENOSPC a little early; zero-fill cannot reach those blocks.
        expect(await nonZeroClusters(served.fuseFile!, fx.freedClusters)).toBeLessThan(fx.freedClusters.length / 20);
      } finally {
        await served[Symbol.asyncDispose]();
      }
      // Besides: a zero write covering only part of a cluster (the file's extents need not start
      // on a 64 KiB boundary) is stored as allocated zeros, not as a zero cluster.
      expect(await unmappedAsZero(overlay, fx.freedClusters)).toBeLessThan(fx.freedClusters.length / 8);
      expect(await leftovers()).toEqual([]);
    });

    it('reports vfat as not mountable when the kernel has no driver', async () => {
      const fx = await fixture('vfat');
      const { served } = await serveOverlay(fx, 'vfat');
      await using _ = served;
      const outcome = await trimByMount(ctx, { fuseFile: served.fuseFile!, volume: VOLUME, fs: { type: 'vfat' }, workDir: dir });
      const hasVfat = (await readFile('/proc/filesystems', 'utf8')).includes('\tvfat\n');
      expect(outcome).toEqual(hasVfat ? expect.objectContaining({ status: 'trimmed' }) : { status: 'not-mountable', reason: 'no vfat driver in this kernel' });
      expect((await leftovers()).filter((l) => !l.startsWith(served.fuseFile!))).toEqual([]);
    });

    it('reports garbage as not mountable with the tool’s reason', async () => {
      const fx = await fixture('vfat');
      const { served } = await serveOverlay(fx, 'garbage');
      await using _ = served;
      const outcome = await trimByMount(ctx, { fuseFile: served.fuseFile!, volume: VOLUME, fs: { type: 'ntfs' }, workDir: dir });
      expect(outcome).toEqual({ status: 'not-mountable', reason: 'NTFS signature is missing' });
    });

    it('leaves a hibernated Windows volume alone: ntfs-3g mounts it read-only, and that is refused', async () => {
      const fx = await fixture('ntfs-hibernated');
      const { served } = await serveOverlay(fx, 'hibernated');
      await using _ = served;
      const outcome = await trimByMount(ctx, { fuseFile: served.fuseFile!, volume: VOLUME, fs: { type: 'ntfs' }, workDir: dir });
      expect(outcome).toEqual({ status: 'not-mountable', reason: 'Windows is hibernated, refused to mount' });
      expect(await nonZeroClusters(served.fuseFile!, fx.freedClusters)).toBe(fx.freedClusters.length);
      expect((await leftovers()).filter((l) => !l.startsWith(served.fuseFile!))).toEqual([]);
    });

    it('releases mount and loop device when aborted while mounted', async () => {
      const fx = await fixture('ext4');
      const { served } = await serveOverlay(fx, 'abort');
      await using _ = served;
      const controller = new AbortController();
      const actx: RunContext = makeContext(
        { ...silentLogger, trace: (argv) => (argv[0] === 'fstrim' ? controller.abort() : undefined) },
        controller.signal,
      );
      await expect(trimByMount(actx, { fuseFile: served.fuseFile!, volume: VOLUME, fs: { type: 'ext4' }, workDir: dir })).rejects.toMatchObject({
        code: 'CANCELLED',
      });
      expect((await leftovers()).filter((l) => !l.startsWith(served.fuseFile!))).toEqual([]);
    });
  },
);
