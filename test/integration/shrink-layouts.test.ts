/**
 * `sparsify --shrink IN OUT` on make-image fixtures other than the Debian guest (issue 12):
 * a GPT disk whose last filesystem is xfs (the ext4 before it shrinks, the xfs keeps its size,
 * moves down and the report says why), and an MBR disk with logical partitions (its EBR chain
 * rewritten; sfdisk --verify clean). For each: every file of every volume identical and fsck
 * clean where the output's table now puts it (test/helpers/shrunk-manifest.ts), and IN's sha256
 * unchanged. The fixtures are shared with other suites (the same make-image arguments).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ShrinkReport } from '../../src/shrink/run.js';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { runShrinkCli, SHRINK_RUN_MS } from '../helpers/shrink-run.js';
import { writeShrunkManifest } from '../helpers/shrunk-manifest.js';
import { sha256File, verifyImage } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const RUN_MS = SHRINK_RUN_MS;

interface Shrunk {
  readonly image: BuiltImage;
  readonly dir: string;
  readonly report: ShrinkReport;
  readonly out: string;
  readonly inputShaBefore: string;
  /** The run's standard output: the closing text. */
  readonly stdout: string;
}

/** Builds (or reuses) the fixture and shrinks it once for the suite; `get()` gives the result in the tests. */
function useShrunk(name: string, build: () => Promise<BuiltImage>): { get: () => Shrunk } {
  let shrunk: Shrunk | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(`/var/tmp/sp-shrink-${name}-`);
    const image = await build();
    shrunk = { image, dir, ...(await shrinkImage(image, dir, name)) };
  }, RUN_MS);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return { get: () => shrunk ?? expect.fail('the shrink did not run') };
}

/** Shrinks `image` through the CLI into DIR/NAME.raw; asserts the run succeeded. */
async function shrinkImage(image: BuiltImage, dir: string, name: string): Promise<Omit<Shrunk, 'image' | 'dir'>> {
  const inputShaBefore = await sha256File(image.imagePath);
  const out = join(dir, `${name}.raw`);
  const json = join(dir, `${name}.json`);
  const r = await runShrinkCli(['--shrink', '--format', 'raw', '--json', json, image.imagePath, out]);
  if (r.exitCode !== 0) throw new Error(`sparsify --shrink exited ${r.exitCode}: ${r.stderr}`);
  const report = (JSON.parse(await readFile(json, 'utf8')) as { shrink: ShrinkReport }).shrink;
  console.log(`shrink ${name}: ${report.virtualSizeBeforeBytes} -> ${report.virtualSizeAfterBytes}`, JSON.stringify(report.volumes));
  return { report, out, inputShaBefore, stdout: r.stdout };
}

/** Every file of every volume identical, fsck clean, at the output's new places. */
async function expectFilesIdentical(image: BuiltImage, out: string, dir: string): Promise<void> {
  const manifest = join(dir, `${out.split('/').pop()}.manifest.json`);
  await writeShrunkManifest(image.manifestPath, out, manifest);
  const verdict = await verifyImage(out, 'raw', manifest);
  expect(verdict.problems).toEqual([]);
  expect(verdict.perVolume.filter((v) => v.fs !== 'swap').every((v) => v.filesChecked > 0)).toBe(true);
}

/** Each resized volume's report says how many files the run itself found identical after the resize: every regular file the fixture wrote; a kept one says none. */
function expectFilesCheckedByTheRun(image: BuiltImage, report: ShrinkReport): void {
  for (const v of report.volumes) {
    const files = Object.keys(image.manifest.volumes.find((m) => m.name === v.name)?.files ?? {}).length;
    expect([v.name, v.filesChecked]).toEqual([v.name, v.action === 'resized' ? files : undefined]);
    if (v.action === 'resized') expect(files).toBeGreaterThan(0);
  }
}

describeIntegration('sparsify --shrink on a disk whose last filesystem is xfs', { tools: ['guestfish', 'qemu-img', 'sgdisk', 'sfdisk', 'xfs_repair', 'e2fsck', 'losetup'], root: true }, () => {
  // Shared with crash-consistent, appliance-cancel, appliance-rootless and libvirt.
  const run = useShrunk('xfs', () => buildImage({ layout: 'gpt', fs: ['ext4', 'xfs'], size: '1G', fillMiB: 16, garbageMiB: 64, seed: 17 }));

  it('shrinks the ext4 before it; the xfs keeps its size, moves down, and the report says why; the disk ends on a whole MiB', async () => {
    const { report, out } = run.get();
    expect(report.volumes.map((v) => [v.name, v.action])).toEqual([
      ['/dev/sda1', 'resized'],
      ['/dev/sda2', 'kept'],
    ]);
    const [ext, xfs] = report.volumes;
    expect(ext!.newSizeBytes).toBeLessThan(ext!.oldSizeBytes);
    expect(xfs!.reason).toMatch(/xfs cannot shrink/);
    expect(xfs!.newSizeBytes).toBe(xfs!.oldSizeBytes);
    expect(xfs!.newOffsetBytes).toBeLessThan(xfs!.oldOffsetBytes);
    expect(report.virtualSizeAfterBytes).toBeLessThan(report.virtualSizeBeforeBytes);
    expect((await stat(out)).size).toBe(report.virtualSizeAfterBytes);
    // A whole number of MiB (VHD and Azure round up to one; the GPT backup is at that end: sgdisk -v below).
    expect(report.virtualSizeAfterBytes % (1024 * 1024)).toBe(0);
    // The closing text says the same to a person.
    const { stdout } = run.get();
    const size = String.raw`[\d.]+ [KMG]iB`;
    expect(stdout).toMatch(new RegExp(String.raw`^Shrunk: virtual size 1\.0 GiB -> ${size}$`, 'm'));
    expect(stdout).toMatch(new RegExp(String.raw`^ {2}/dev/sda1 {2}resized ${size} -> ${size} \(minimum ${size} \+ margin ${size}\), ${ext!.filesChecked} files identical$`, 'm'));
    expectFilesCheckedByTheRun(run.get().image, report);
    expect(stdout).toMatch(new RegExp(String.raw`^ {2}/dev/sda2 {2}kept ${size}: xfs cannot shrink: kept its size, moved down ${size}$`, 'm'));
  });

  it('sgdisk -v is clean, every file is identical and both filesystems check clean', async () => {
    const { image, out, dir } = run.get();
    expect((await execFileAsync('sgdisk', ['-v', out])).stdout).toMatch(/No problems found/);
    await expectFilesIdentical(image, out, dir);
  }, RUN_MS);

  it("the input's sha256 is unchanged", async () => {
    const { image, inputShaBefore } = run.get();
    expect(await sha256File(image.imagePath)).toBe(inputShaBefore);
  });
});

describeIntegration('sparsify --shrink on an MBR disk with logical partitions', { tools: ['guestfish', 'qemu-img', 'sfdisk', 'e2fsck', 'losetup', 'ntfsfix', 'mcopy'], root: true }, () => {
  // The raw twin of fixtures.test.ts' MBR fixture: 1, 2 primary; 5–8 logical in an extended partition.
  const run = useShrunk('mbr', () => buildImage({ layout: 'mbr', fs: ['ext4', 'vfat', 'ext3', 'swap', 'ntfs', 'ext2'], size: '1G', fillMiB: 4, garbageMiB: 16 }));

  it('the ext and ntfs filesystems shrink, primary and logical; the logical partitions move down', () => {
    const { report } = run.get();
    expect(report.volumes.map((v) => [v.name, v.action])).toEqual([
      ['/dev/sda1', 'resized'],
      ['/dev/sda2', 'kept'],
      ['/dev/sda5', 'resized'],
      ['/dev/sda6', 'remade'],
      ['/dev/sda7', 'resized'],
      ['/dev/sda8', 'resized'],
    ]);
    for (const v of report.volumes.filter((x) => /sda[5-8]$/.test(x.name))) expect(v.newOffsetBytes).toBeLessThan(v.oldOffsetBytes);
    expect(report.virtualSizeAfterBytes).toBeLessThan(report.virtualSizeBeforeBytes);
    expectFilesCheckedByTheRun(run.get().image, report);
  });

  it('sfdisk --verify is clean and the chain still holds four logical partitions in an extended one, same disk id and types', async () => {
    const { image, out } = run.get();
    const verify = await execFileAsync('sfdisk', ['--verify', out]).catch((e: { stdout: string; stderr: string; code: number }) => e);
    expect('code' in verify ? verify.code : 0).toBe(0);
    expect(verify.stdout).toMatch(/No errors detected/);
    const table = async (f: string) => (JSON.parse((await execFileAsync('sfdisk', ['--json', f])).stdout) as { partitiontable: { id: string; partitions: Array<{ node: string; type: string }> } }).partitiontable;
    const [before, after] = [await table(image.imagePath), await table(out)];
    expect(after.id).toBe(before.id);
    const shape = (t: typeof before) => t.partitions.map((p) => [/(\d+)$/.exec(p.node)![1], p.type]);
    expect(shape(after)).toEqual(shape(before));
  });

  it('every file is identical and every filesystem checks clean', async () => {
    const { image, out, dir } = run.get();
    await expectFilesIdentical(image, out, dir);
  }, RUN_MS);

  it("the input's sha256 is unchanged", async () => {
    const { image, inputShaBefore } = run.get();
    expect(await sha256File(image.imagePath)).toBe(inputShaBefore);
  });
});
