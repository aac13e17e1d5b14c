import { execFileSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, verifyImage } from '../helpers/verify.js';

const MiB = 1024 * 1024;

describeIntegration('copy-mode options on a real image', { tools: ['qemu-img', 'qemu-storage-daemon', 'losetup', 'fstrim'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let work: string;
  let ext4: string;
  let swap: string;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4', 'swap'], size: '512M', fillMiB: 16, garbageMiB: 64, seed: 11 });
    ext4 = image.manifest.volumes.find((v) => v.fs === 'ext4')!.name;
    swap = image.manifest.volumes.find((v) => v.fs === 'swap')!.name;
    dir = await makeRunTmp();
    work = join(dir, 'work');
    await mkdir(work);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function sparsify(name: string, args: string[]) {
    const out = join(dir, `${name}.qcow2`);
    const json = join(dir, `${name}.json`);
    const r = await runCli(['--tmp', work, '--convert', 'qcow2', '--json', json, ...args, image.imagePath, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await leftoversUnder(work)).toEqual([]);
    const report = await readReport(json);
    const row = (n: string) => report.volumes.find((v) => v.name === n)!;
    return { out, r, report, row, allocated: await allocatedBytes(out) };
  }

  it('--ignore leaves a filesystem as it is; the default reclaims it', async () => {
    const plain = await sparsify('plain', []);
    const ignored = await sparsify('ignored', ['--ignore', ext4]);
    expect(plain.row(ext4).handled).toBe('free blocks skipped');
    expect(plain.row(ext4).reclaimedBytes).toBeGreaterThan(60 * MiB);
    expect(ignored.row(ext4)).toMatchObject({ handled: 'copied as is', reason: 'ignored (--ignore)', reclaimedBytes: 0 });
    expect(ignored.r.stderr).not.toMatch(new RegExp(`warning: ${ext4}`));
    expect(ignored.allocated - plain.allocated).toBeGreaterThan(60 * MiB);
    expect((await verifyImage(ignored.out, 'qcow2', image.manifestPath)).problems).toEqual([]);
  });

  it('--zero makes a volume wholly zero', async () => {
    const { out, row } = await sparsify('zeroed', ['--zero', ext4]);
    expect(row(ext4).handled).toBe('zeroed');
    const vol = image.manifest.volumes.find((v) => v.name === ext4)!;
    const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', out], { encoding: 'utf8' })) as { start: number; length: number; data: boolean }[];
    const dataInVolume = map.filter((m) => m.data && m.start < vol.offsetBytes + vol.sizeBytes && m.start + m.length > vol.offsetBytes);
    expect(dataInVolume).toEqual([]);
  });

  it('--no-zero: no filesystem pass, only what already reads as zero is skipped', async () => {
    const { row, allocated } = await sparsify('nozero', ['--no-zero']);
    expect(row(ext4)).toMatchObject({ handled: 'copied as is', reason: 'no filesystem pass (--no-zero)' });
    expect(row(swap).handled).toBe('copied as is');
    expect(allocated).toBeGreaterThan(120 * MiB);
  });

  it('--overwrite replaces an existing output', async () => {
    const out = join(dir, 'replace.qcow2');
    await writeFile(out, 'old contents');
    const r = await runCli(['--tmp', work, '--convert', 'qcow2', '--overwrite', '-q', image.imagePath, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect((await verifyImage(out, 'qcow2', image.manifestPath)).ok).toBe(true);
  });

  it.each(['vmdk', 'vdi', 'vhdx', 'vpc'] as const)('--convert %s: the output is that format, same size, every file intact', async (format) => {
    const out = join(dir, `converted.${format}`);
    const r = await runCli(['--tmp', work, '--convert', format, '-q', image.imagePath, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', out], { encoding: 'utf8' })) as { format: string; 'virtual-size': number };
    expect(info.format).toBe(format);
    expect(info['virtual-size']).toBe(image.manifest.virtualSizeBytes);
    const raw = join(dir, `converted-${format}.raw`);
    execFileSync('qemu-img', ['convert', '-f', format, '-O', 'raw', out, raw]);
    expect((await verifyImage(raw, 'raw', image.manifestPath)).problems).toEqual([]);
    await rm(raw);
  });

  it('-o passes creation options to the output image, also with --compress', async () => {
    for (const extra of [[], ['--compress']]) {
      const out = join(dir, `opts${extra.length}.qcow2`);
      const r = await runCli(['--tmp', work, '--convert', 'qcow2', '-o', 'cluster_size=131072', '-q', ...extra, image.imagePath, out]);
      expect(r.exitCode, r.stderr).toBe(0);
      const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', out], { encoding: 'utf8' })) as { 'cluster-size': number };
      expect(info['cluster-size']).toBe(131072);
      expect((await verifyImage(out, 'qcow2', image.manifestPath)).problems).toEqual([]);
    }
  });

  it('--machine-readable: capability lines with no disks; status and N/D progress lines with disks', async () => {
    const caps = await runCli(['--machine-readable']);
    expect(caps.exitCode).toBe(0);
    expect(caps.stdout.split('\n')).toEqual(expect.arrayContaining(['virt-sparsify', 'linux-swap', 'zero', 'check-tmpdir', 'in-place', 'tmp-option']));
    const out = join(dir, 'mr.qcow2');
    const r = await runCli(['--tmp', work, '--machine-readable', image.imagePath, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toContain('Copy to destination and make sparse');
    const progress = lines.filter((l) => /^\d+\/\d+$/.test(l));
    expect(progress.length).toBeGreaterThan(0);
    // The total is what the copy reads (test/integration/progress.test.ts), not the virtual size.
    const [done, total] = progress.at(-1)!.split('/').map(Number);
    expect(done).toBe(total);
    expect(total).toBeLessThan(image.manifest.virtualSizeBytes);
    const toFile = join(dir, 'mr.txt');
    const r2 = await runCli(['--tmp', work, '--overwrite', `--machine-readable=file:${toFile}`, image.imagePath, out]);
    expect(r2.exitCode).toBe(0);
    expect(r2.stdout).toBe('');
    expect(await readFile(toFile, 'utf8')).toMatch(/^\d+\/\d+$/m);
  });

  it('-x prints each external command', async () => {
    const out = join(dir, 'trace.qcow2');
    const r = await runCli(['--tmp', work, '-x', '-q', '--engine', 'mount', image.imagePath, out]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/^\+ qemu-img info /m);
    expect(r.stderr).toMatch(/^\+ (\S*\/)?fstrim /m);
  });

  it('--check-tmpdir=warn (the default) warns but never waits for RETURN when stdin is not a terminal', async () => {
    const small = join(dir, 'small-tmp');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', small]);
    try {
      const runTmp = join(small, 'run');
      await mkdir(runTmp);
      const out = join(dir, 'warned.qcow2');
      const r = await runCli(['--tmp', runTmp, '--convert', 'qcow2', '-q', '--engine', 'mount', image.imagePath, out]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/warning: There may not be enough free space/);
      expect(r.stderr).not.toMatch(/Press RETURN/);
      expect(await leftoversUnder(runTmp)).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
  });

  /**
   * The bytes a qcow2 overlay holds itself (depth 0 in `qemu-img map`, data or zero clusters),
   * not read through from its backing file: what the mount engine's trims and mount wrote.
   */
  function overlayOwnBytes(overlay: string): number {
    const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', '-f', 'qcow2', overlay], { encoding: 'utf8' })) as { length: number; depth: number }[];
    return map.filter((m) => m.depth === 0).reduce((sum, m) => sum + m.length, 0);
  }

  // --engine mount: the default engine maps every volume of this image and needs no overlay.
  it('--tmp prebuilt:FILE uses the given overlay and leaves it', async () => {
    const overlay = join(dir, 'prebuilt.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=1.1', '-b', image.imagePath, '-F', 'raw', overlay]);
    expect(overlayOwnBytes(overlay)).toBe(0);
    const out = join(dir, 'pre.qcow2');
    const r = await runCli(['--tmp', `prebuilt:${overlay}`, '--engine', 'mount', '--convert', 'qcow2', '-q', image.imagePath, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await verifyImage(out, 'qcow2', image.manifestPath)).ok).toBe(true);
    // The ext4's trimmed free space (64 MiB of garbage) is now zero clusters of the overlay.
    expect(overlayOwnBytes(overlay)).toBeGreaterThan(32 * MiB);
  });

  it('--tmp BLOCKDEV puts the overlay on a block device', async () => {
    const backing = join(dir, 'blockdev.img');
    const pattern = Buffer.alloc(4 * MiB, 0xa5);
    await writeFile(backing, pattern);
    execFileSync('truncate', ['-s', '256M', backing]);
    const loop = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
    try {
      const out = join(dir, 'blk.qcow2');
      const r = await runCli(['--tmp', loop, '--engine', 'mount', '--convert', 'qcow2', '-q', image.imagePath, out]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect((await verifyImage(out, 'qcow2', image.manifestPath)).ok).toBe(true);
      // The known pattern gave way to a qcow2 overlay of the input holding the trims.
      expect(execFileSync('head', ['-c', '4', loop]).toString('latin1')).toBe('QFI\xfb');
      expect(overlayOwnBytes(loop)).toBeGreaterThan(32 * MiB);
    } finally {
      execFileSync('losetup', ['-d', loop]);
    }
  });
});
