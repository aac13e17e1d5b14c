/**
 * The fixtures and the independent verifier that every sparsify integration test relies on:
 * the fixtures must be dirty and well described, and the verifier must be able to say no.
 */
import { execFile } from 'node:child_process';
import { open, mkdtemp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, verifyImage, type ManifestVolume } from '../helpers/verify.js';

const run = promisify(execFile);
const MIB = 1024 * 1024;

const TOOLS = [
  'qemu-img', 'qemu-storage-daemon', 'losetup', 'sgdisk', 'sfdisk', 'openssl',
  'mkfs.ext4', 'mkfs.xfs', 'mkfs.btrfs', 'mkntfs', 'mkfs.fat', 'mkswap', 'ntfs-3g', 'mcopy',
  'e2fsck', 'xfs_repair', 'btrfs', 'ntfsfix', 'fsck.fat', 'filefrag',
];

/** Finds where a file's first block lies in the image, through a read-only mount of a copy. */
async function firstBlockOffset(image: string, volume: ManifestVolume, path: string, dir: string): Promise<number> {
  const { stdout: loop } = await run('losetup', [
    '-r', '-f', '--show', '-o', String(volume.offsetBytes), '--sizelimit', String(volume.sizeBytes), image,
  ]);
  const device = loop.trim();
  const mnt = join(dir, 'mnt');
  await mkdir(mnt, { recursive: true });
  try {
    await run('mount', ['-t', 'ext4', '-o', 'ro,noload', device, mnt]);
    try {
      const { stdout } = await run('filefrag', ['-v', join(mnt, path)]);
      const blockBytes = Number(/blocks? of (\d+) bytes/.exec(stdout)?.[1]);
      const physical = Number(/^\s*0:\s+\d+\.\.\s*\d+:\s+(\d+)\.\./m.exec(stdout)?.[1]);
      if (!blockBytes || !physical) throw new Error(`cannot parse filefrag output: ${stdout}`);
      return volume.offsetBytes + physical * blockBytes;
    } finally {
      await run('umount', [mnt]);
    }
  } finally {
    await run('losetup', ['-d', device]);
  }
}

async function overwrite(path: string, offsetBytes: number, bytes: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, offsetBytes);
  } finally {
    await handle.close();
  }
}

describeIntegration('fixtures and the independent verifier', { root: true, tools: TOOLS }, () => {
  let gpt: BuiltImage;
  let mbr: BuiltImage;
  let whole: BuiltImage;
  let work: string;

  beforeAll(async () => {
    gpt = await buildImage({
      layout: 'gpt', fs: ['ext4', 'xfs', 'ntfs', 'vfat', 'swap', 'btrfs'], size: '2G', fillMiB: 8, garbageMiB: 32,
    });
    mbr = await buildImage({
      layout: 'mbr', fs: ['ext4', 'vfat', 'ext3', 'swap', 'ntfs', 'ext2'], size: '1G', fillMiB: 4, garbageMiB: 16,
      format: 'qcow2',
    });
    whole = await buildImage({ layout: 'whole', fs: ['ext4'], size: '256M', fillMiB: 4, garbageMiB: 32 });
    work = await mkdtemp('/tmp/sparsify-fix-test-');
  });

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('describes volumes with libguestfs names and the table sectors', () => {
    expect(gpt.manifest.volumes.map((v) => `${v.name}:${v.fs}`)).toEqual([
      '/dev/sda1:ext4', '/dev/sda2:xfs', '/dev/sda3:ntfs', '/dev/sda4:vfat', '/dev/sda5:swap', '/dev/sda6:btrfs',
    ]);
    expect(mbr.manifest.volumes.map((v) => v.name)).toEqual([
      '/dev/sda1', '/dev/sda2', '/dev/sda5', '/dev/sda6', '/dev/sda7', '/dev/sda8',
    ]);
    // sector 0 plus one EBR per logical partition
    expect(mbr.manifest.partitionTable?.ranges).toHaveLength(5);
    expect(whole.manifest.volumes.map((v) => `${v.name}@${v.offsetBytes}`)).toEqual(['/dev/sda@0']);
    expect(whole.manifest.partitionTable).toBeNull();
    const btrfs = gpt.manifest.volumes[5]!;
    expect(Object.keys(btrfs.files)).toContain('snap-ro/only-in-snapshot.bin');
    expect(Object.keys(btrfs.files)).not.toContain('sub/only-in-snapshot.bin');
  });

  it('is dirty: the deleted garbage still takes space in the image', async () => {
    const garbageBytes = gpt.manifest.volumes.length * 32 * MIB;
    const liveBytes = gpt.manifest.volumes.reduce((sum, v) => sum + v.liveBytes, 0);
    expect(await allocatedBytes(gpt.imagePath)).toBeGreaterThan(garbageBytes + liveBytes);
  });

  it('verifies the GPT image it built', async () => {
    const result = await verifyImage(gpt.imagePath, 'raw', gpt.manifestPath);
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    // every non-swap volume had its files read back
    for (const v of result.perVolume) if (v.fs !== 'swap') expect(v.filesChecked).toBeGreaterThan(20);
  });

  it('verifies a qcow2 conversion of it', async () => {
    const qcow2 = join(work, 'gpt.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', gpt.imagePath, qcow2]);
    const result = await verifyImage(qcow2, 'qcow2', gpt.manifestPath);
    expect(result.problems).toEqual([]);
  });

  it('verifies the MBR image (logical partitions) and the whole-disk image', async () => {
    const results = [
      await verifyImage(mbr.imagePath, 'qcow2', mbr.manifestPath),
      await verifyImage(whole.imagePath, 'raw', whole.manifestPath),
    ];
    expect(results.flatMap((r) => r.problems)).toEqual([]);
  });

  it('says no, naming the file, when one kept file has different bytes', async () => {
    const copy = join(work, 'changed-file.raw');
    await copyImage(gpt.imagePath, copy);
    const ext4 = gpt.manifest.volumes[0]!;
    const offsetBytes = await firstBlockOffset(copy, ext4, 'big/data-001.bin', work);
    await overwrite(copy, offsetBytes, Buffer.alloc(4096));
    const result = await verifyImage(copy, 'raw', gpt.manifestPath);
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([expect.stringMatching(/^\/dev\/sda1 \(ext4\): file big\/data-001\.bin differs/)]);
    await rm(copy);
  });

  it('says no when the partition table was zeroed', async () => {
    const copy = join(work, 'zeroed-table.raw');
    await copyImage(gpt.imagePath, copy);
    await overwrite(copy, 0, Buffer.alloc(34 * 512));
    const result = await verifyImage(copy, 'raw', gpt.manifestPath);
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([expect.stringMatching(/^partition table \(gpt\): sectors differ/)]);
    await rm(copy);
  });

  it('says no when a swap header or a whole filesystem was zeroed', async () => {
    const copy = join(work, 'zeroed-volumes.raw');
    await copyImage(gpt.imagePath, copy);
    const [, xfs, , , swap] = gpt.manifest.volumes;
    await overwrite(copy, swap!.offsetBytes, Buffer.alloc(4096));
    await overwrite(copy, xfs!.offsetBytes, Buffer.alloc(MIB));
    const result = await verifyImage(copy, 'raw', gpt.manifestPath);
    expect(result.ok).toBe(false);
    const failed = result.perVolume.filter((v) => !v.ok).map((v) => v.name);
    expect(failed).toEqual(['/dev/sda2', '/dev/sda5']);
    await rm(copy);
  });
});
