/**
 * `sparsify --shrink IN OUT` on a GPT disk of make-image: a btrfs (files, a subvolume `sub` and
 * a read-only snapshot `snap-ro` of it holding a file only the snapshot keeps) followed by an
 * ext4. The btrfs shrinks to `btrfs inspect-internal min-dev-size` plus the margin, the ext4
 * after it shrinks and moves down, OUT's virtual size shrinks; `btrfs check --readonly` (run by
 * sparsify in its appliance, and here again over a loop device of OUT) is clean, every file of
 * both filesystems is identical where OUT's table now puts it, the subvolume and the read-only
 * snapshot are still there, the filesystem UUID is kept, `sgdisk -v` is clean, IN's sha256 is
 * unchanged, and the JSON report gives the btrfs' old and new size.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseBtrfsSuperblock } from '../../src/fs/btrfs/probe.js';
import type { ShrinkReport } from '../../src/shrink/run.js';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { runShrinkCli, SHRINK_RUN_MS } from '../helpers/shrink-run.js';
import { writeShrunkManifest } from '../helpers/shrunk-manifest.js';
import { sha256File, verifyImage } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const MiB = 1 << 20;

interface Run {
  readonly image: BuiltImage;
  readonly out: string;
  readonly report: ShrinkReport;
  readonly inputShaBefore: string;
  readonly seconds: number;
}

async function sh(file: string, args: readonly string[]): Promise<string> {
  return (await execFileAsync(file, args, { maxBuffer: 16 << 20 })).stdout;
}

/** Runs `fn` with `file`'s btrfs (at `offsetBytes`, `sizeBytes` long) mounted read-only; the loop device and mount go afterwards. */
async function withBtrfs<T>(file: string, offsetBytes: number, sizeBytes: number, dir: string, fn: (mnt: string) => Promise<T>): Promise<T> {
  const dev = (await sh('losetup', ['--find', '--show', '--read-only', '-o', String(offsetBytes), '--sizelimit', String(sizeBytes), file])).trim();
  const mnt = await mkdtemp(join(dir, 'mnt-'));
  try {
    await sh('mount', ['-t', 'btrfs', '-o', 'ro', dev, mnt]);
    try {
      return await fn(mnt);
    } finally {
      await sh('umount', [mnt]);
    }
  } finally {
    await execFileAsync('btrfs', ['device', 'scan', '--forget', dev]).catch(() => undefined);
    await sh('losetup', ['-d', dev]);
    await rm(mnt, { recursive: true, force: true });
  }
}

/** The btrfs superblock at `offsetBytes` of `file`, decoded. */
async function superblockAt(file: string, offsetBytes: number) {
  const f = await open(file, 'r');
  try {
    const sb = Buffer.alloc(1024);
    await f.read(sb, 0, 1024, offsetBytes + 65536);
    return parseBtrfsSuperblock(sb);
  } finally {
    await f.close();
  }
}

describeIntegration('sparsify --shrink on a btrfs (subvolume, snapshot) followed by an ext4', { tools: ['guestfish', 'qemu-img', 'sgdisk', 'sfdisk', 'btrfs', 'e2fsck', 'losetup'], root: true }, () => {
  let dir: string | undefined;
  let run: Run | undefined;
  const get = (): Run => run ?? expect.fail('the shrink did not run');

  beforeAll(async () => {
    dir = await mkdtemp('/var/tmp/sp-shrink-btrfs-');
    const image = await buildImage({ layout: 'gpt', fs: ['btrfs', 'ext4'], size: '768M', fillMiB: 100, garbageMiB: 16, seed: 12 });
    const inputShaBefore = await sha256File(image.imagePath);
    const out = join(dir, 'btrfs.raw');
    const json = join(dir, 'btrfs.json');
    const started = Date.now();
    const r = await runShrinkCli(['--shrink', '--format', 'raw', '--json', json, image.imagePath, out]);
    if (r.exitCode !== 0) throw new Error(`sparsify --shrink exited ${r.exitCode}: ${r.stderr}`);
    const seconds = (Date.now() - started) / 1000;
    const report = (JSON.parse(await readFile(json, 'utf8')) as { shrink: ShrinkReport }).shrink;
    console.log(`shrink btrfs in ${seconds} s: ${report.virtualSizeBeforeBytes} -> ${report.virtualSizeAfterBytes}`, JSON.stringify(report.volumes));
    run = { image, out, report, inputShaBefore, seconds };
  }, SHRINK_RUN_MS);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the btrfs shrinks to its minimum plus the margin, the ext4 after it moves down, OUT is smaller', async () => {
    const { report, out, image } = get();
    expect(report.volumes.map((v) => [v.name, v.action])).toEqual([
      ['/dev/sda1', 'resized'],
      ['/dev/sda2', 'resized'],
    ]);
    const [btrfs, ext4] = report.volumes;
    // min-dev-size counts the allocated chunks: at least the files, less than the old size.
    expect(btrfs!.minimumBytes).toBeGreaterThanOrEqual(image.manifest.volumes[0]!.liveBytes);
    expect(btrfs!.marginBytes).toBe(Math.ceil(btrfs!.minimumBytes! * 0.05));
    expect(btrfs!.newSizeBytes).toBeGreaterThanOrEqual(btrfs!.minimumBytes! + btrfs!.marginBytes!);
    expect(btrfs!.newSizeBytes).toBeLessThan(btrfs!.minimumBytes! + btrfs!.marginBytes! + MiB);
    expect(btrfs!.newSizeBytes).toBeLessThan(btrfs!.oldSizeBytes);
    // The run compared every file of both before the resize and after the moves.
    expect(btrfs!.filesChecked).toBeGreaterThanOrEqual(Object.keys(image.manifest.volumes[0]!.files).length);
    expect(ext4!.filesChecked).toBe(Object.keys(image.manifest.volumes[1]!.files).length);
    expect(Object.keys(image.manifest.volumes[1]!.files).length).toBeGreaterThan(0);
    expect(btrfs!.newOffsetBytes).toBe(btrfs!.oldOffsetBytes);
    expect(ext4!.newOffsetBytes).toBeLessThan(ext4!.oldOffsetBytes);
    expect(ext4!.newOffsetBytes).toBeGreaterThanOrEqual(btrfs!.newOffsetBytes + btrfs!.newSizeBytes);
    expect(report.virtualSizeAfterBytes).toBeLessThan(report.virtualSizeBeforeBytes);
    expect((await stat(out)).size).toBe(report.virtualSizeAfterBytes);
  });

  it('the btrfs has its new size in its superblock and kept its UUID and label', async () => {
    const { report, out, image } = get();
    const [btrfs] = report.volumes;
    const sb = await superblockAt(out, btrfs!.newOffsetBytes);
    expect(sb).toMatchObject({ type: 'btrfs', uuid: image.manifest.volumes[0]!.uuid, label: image.manifest.volumes[0]!.label });
    await withBtrfs(out, btrfs!.newOffsetBytes, btrfs!.newSizeBytes, dir!, async (mnt) => {
      const usage = await sh('btrfs', ['filesystem', 'usage', '-b', mnt]);
      expect(Number(/Device size:\s+(\d+)/.exec(usage)?.[1])).toBe(btrfs!.newSizeBytes);
    });
  });

  it('the subvolume and the read-only snapshot are still there', async () => {
    const { report, out } = get();
    const [btrfs] = report.volumes;
    const list = await withBtrfs(out, btrfs!.newOffsetBytes, btrfs!.newSizeBytes, dir!, (mnt) => sh('btrfs', ['subvolume', 'list', mnt]));
    expect(list.trim().split('\n').map((l) => l.split(' path ')[1])).toEqual(['sub', 'snap-ro']);
  });

  it('sgdisk -v is clean; every file is identical, btrfs check --readonly and e2fsck clean, the snapshot still read-only', async () => {
    const { image, out } = get();
    expect(await sh('sgdisk', ['-v', out])).toMatch(/No problems found/);
    const manifest = join(dir!, 'btrfs.manifest.json');
    await writeShrunkManifest(image.manifestPath, out, manifest);
    const verdict = await verifyImage(out, 'raw', manifest);
    expect(verdict.problems).toEqual([]);
    expect(verdict.perVolume.map((v) => [v.fs, v.filesChecked > 0])).toEqual([
      ['btrfs', true],
      ['ext4', true],
    ]);
  }, SHRINK_RUN_MS);

  it("the input's sha256 is unchanged", async () => {
    const { image, inputShaBefore } = get();
    expect(await sha256File(image.imagePath)).toBe(inputShaBefore);
  });

  it("the JSON report gives the btrfs' old size (IN's partition) and new size (OUT's partition)", async () => {
    const { report, image, out } = get();
    const table = JSON.parse(await sh('sfdisk', ['--json', out])) as { partitiontable: { partitions: Array<{ start: number; size: number }> } };
    const part1 = table.partitiontable.partitions[0]!;
    expect(report.volumes[0]).toMatchObject({
      name: '/dev/sda1',
      action: 'resized',
      oldSizeBytes: image.manifest.volumes[0]!.sizeBytes,
      newOffsetBytes: part1.start * 512,
      newSizeBytes: part1.size * 512,
    });
  });
});
