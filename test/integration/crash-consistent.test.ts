/**
 * A crash-consistent snapshot: a disk copied while its ext4 and xfs were mounted and being
 * written. Their on-disk maps are stale until the journals are replayed, so the map engine must
 * refuse them and the mount engine must replay them (in the overlay in copy mode, in the image in
 * place). Afterwards the output holds exactly the files the input holds after replay.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const run = (file: string, args: string[]) => execFileSync(file, args, { encoding: 'utf8' });

/** Every regular file under `root` → sha256. */
async function hashTree(root: string, dir = root, out: Record<string, string> = {}): Promise<Record<string, string>> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await hashTree(root, path, out);
    else if (entry.isFile()) out[relative(root, path)] = createHash('sha256').update(await readFile(path)).digest('hex');
  }
  return out;
}

interface Vol {
  name: string;
  fs: string;
  offsetBytes: number;
  sizeBytes: number;
}

/** Mounts one volume of a raw image (read-write, so a dirty journal is replayed), calls fn, unmounts. */
async function withMounted<T>(image: string, vol: Vol, mnt: string, fn: () => Promise<T>, readOnly = false): Promise<T> {
  const loop = run('losetup', ['--find', '--show', ...(readOnly ? ['--read-only'] : []), '--offset', String(vol.offsetBytes), '--sizelimit', String(vol.sizeBytes), image]).trim();
  try {
    const opts = [readOnly ? 'ro' : 'rw', ...(vol.fs === 'xfs' ? ['nouuid'] : []), ...(readOnly && vol.fs !== 'xfs' ? ['noload'] : [])];
    run('mount', ['-o', opts.join(','), loop, mnt]);
    try {
      return await fn();
    } finally {
      run('umount', [mnt]);
    }
  } finally {
    run('losetup', ['-d', loop]);
  }
}

describeIntegration('crash-consistent snapshots: dirty journals are replayed, never read stale', { tools: ['losetup', 'mount', 'qemu-img', 'qemu-storage-daemon', 'e2fsck', 'xfs_repair'], root: true }, () => {
  let base: BuiltImage;
  let dir: string;
  let mnt: string;
  let snapshot: string;
  /** Per volume: the files after journal replay, the truth the output must hold. */
  const truth: Record<string, Record<string, string>> = {};
  let vols: Vol[];

  beforeAll(async () => {
    base = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs'], size: '1G', fillMiB: 16, garbageMiB: 64, seed: 17 });
    vols = base.manifest.volumes.map((v) => ({ name: v.name, fs: v.fs, offsetBytes: v.offsetBytes, sizeBytes: v.sizeBytes }));
    dir = await makeRunTmp();
    mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const live = join(dir, 'live.raw');
    snapshot = join(dir, 'snapshot.raw');
    await copyImage(base.imagePath, live);
    // Mount both filesystems, write and delete, sync, and copy the image while still mounted.
    const loops: string[] = [];
    const mounts: string[] = [];
    try {
      for (const vol of vols) {
        const loop = run('losetup', ['--find', '--show', '--offset', String(vol.offsetBytes), '--sizelimit', String(vol.sizeBytes), live]).trim();
        loops.push(loop);
        const at = join(dir, `live-${vol.fs}`);
        await mkdir(at);
        run('mount', ['-o', vol.fs === 'xfs' ? 'nouuid' : 'rw', loop, at]);
        mounts.push(at);
        for (let i = 0; i < 20; i++) await writeFile(join(at, `new-${i}.bin`), createHash('sha512').update(`${vol.fs}${i}`).digest().toString('hex').repeat(2000 + i * 100));
        await rm(join(at, 'new-3.bin'));
        run('sync', ['-f', join(at, 'new-0.bin')]);
      }
      run('cp', ['--sparse=always', live, snapshot]);
    } finally {
      for (const at of mounts) run('umount', [at]);
      for (const loop of loops) run('losetup', ['-d', loop]);
    }
    // The truth: a second copy of the snapshot, journals replayed by the kernel.
    const replayed = join(dir, 'replayed.raw');
    await copyImage(snapshot, replayed);
    for (const vol of vols) truth[vol.name] = await withMounted(replayed, vol, mnt, () => hashTree(mnt));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function expectReplayedFiles(image: string): Promise<void> {
    for (const vol of vols) {
      const loop = run('losetup', ['--find', '--show', '--read-only', '--offset', String(vol.offsetBytes), '--sizelimit', String(vol.sizeBytes), image]).trim();
      try {
        if (vol.fs === 'ext4') run('e2fsck', ['-fn', loop]);
        else run('xfs_repair', ['-n', loop]);
      } finally {
        run('losetup', ['-d', loop]);
      }
      expect(await withMounted(image, vol, mnt, () => hashTree(mnt), true), vol.name).toEqual(truth[vol.name]);
    }
  }

  it('the snapshot really is dirty', async () => {
    const r = await runCli(['--engine', 'map', '--format', 'raw', '--json', join(dir, 'dirty.json'), snapshot, join(dir, 'map-only.raw')]);
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = (await readReport(join(dir, 'dirty.json'))).volumes;
    for (const row of rows) {
      expect(row.handled).toBe('copied as is');
      expect(row.reason).toMatch(/not trusted/);
    }
  });

  it('copy mode: journals replayed in the overlay; output has the replayed files; input unchanged', async () => {
    const sha = await sha256File(snapshot);
    const tmp = join(dir, 'tmp-copy');
    await mkdir(tmp);
    const out = join(dir, 'out.raw');
    const json = join(dir, 'copy.json');
    const r = await runCli(['--engine', 'mount', '--format', 'raw', '--tmp', tmp, '--json', json, snapshot, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = (await readReport(json)).volumes;
    for (const row of rows) {
      expect(row.action).toBe('mount');
      expect(row.reason).toMatch(/not trusted .*replays its journal/);
    }
    expect(await sha256File(snapshot)).toBe(sha);
    expect(await leftoversUnder(tmp)).toEqual([]);
    await expectReplayedFiles(out);
  });

  it('in place: journals replayed in the image; the files are those after replay', async () => {
    const disk = join(dir, 'inplace.raw');
    await copyImage(snapshot, disk);
    const r = await runCli(['--in-place', '--engine', 'mount', '--format', 'raw', disk]);
    expect(r.exitCode, r.stderr).toBe(0);
    await expectReplayedFiles(disk);
  });
});
