import { execFileSync } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage, type ImageOptions } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File, verifyImage } from '../helpers/verify.js';
import type { RunReport } from '../../src/index.js';

const TOOLS = ['qemu-img', 'qemu-storage-daemon', 'losetup', 'fstrim', 'ntfs-3g', 'mkfs.xfs', 'mkfs.btrfs', 'mkfs.ntfs', 'mkfs.vfat', 'sgdisk', 'sfdisk'];
const ALL_FS = ['ext4', 'xfs', 'ntfs', 'vfat', 'swap', 'btrfs'] as const;
const GARBAGE_MIB = 96;

interface Fixture {
  dirty: BuiltImage;
  /** The same image (same seed) with no deleted data: its allocation is live data plus metadata. */
  clean: BuiltImage;
  /** The dirty image's SHA-256 when the fixture was taken: every run must leave it so (one hash per fixture, not one per run). */
  dirtySha: string;
}

async function fixture(layout: 'gpt' | 'mbr' | 'whole', fs: ImageOptions['fs'], format: 'raw' | 'qcow2'): Promise<Fixture> {
  const common = { layout, fs, size: layout === 'whole' ? '512M' : '2G', fillMiB: 24, format, seed: 3 } as const;
  // At once: make-image gives a clean twin filesystem UUIDs of its own.
  const [dirty, clean] = await Promise.all([buildImage({ ...common, garbageMiB: GARBAGE_MIB }), buildImage({ ...common, garbageMiB: 0 })]);
  return { dirty, clean, dirtySha: await sha256File(dirty.imagePath) };
}

/**
 * Every fixture of the file, started by the first describe's hook: the GPT images its cases need
 * first, each with its clean twin at once, then the other layouts', built while those cases run.
 * make-image mostly waits on the disk (syncs, mounts, ntfs-3g; about a fifth of a core), so its
 * runs overlap at little cost. The layouts' filesystems have UUIDs of their own, and so do clean
 * twins (scripts/make-image): btrfs and xfs refuse two filesystems with one UUID at once.
 */
interface Fixtures {
  gpt: Promise<{ raw: Fixture; qcow2: Fixture }>;
  mbr: Promise<Fixture>;
  whole: Promise<{ raw: Fixture; qcow2: Fixture }>;
}
let fixtures: Fixtures | undefined;
function allFixtures(): Fixtures {
  if (fixtures) return fixtures;
  const both = async (layout: 'gpt' | 'whole', fs: ImageOptions['fs']) => {
    const raw = await fixture(layout, fs, 'raw');
    return { raw, qcow2: await fixture(layout, fs, 'qcow2') };
  };
  const gpt = both('gpt', ALL_FS);
  const afterGpt = gpt.then(() => undefined, () => undefined);
  fixtures = {
    gpt,
    mbr: afterGpt.then(() => fixture('mbr', ['ext4', 'xfs', 'ext3', 'swap', 'ntfs', 'btrfs'], 'raw')),
    whole: afterGpt.then(() => both('whole', ['ext4'])),
  };
  // A chain that fails before its describe awaits it is reported there, not as an unhandled rejection.
  for (const chain of Object.values(fixtures)) (chain as Promise<unknown>).catch(() => undefined);
  return fixtures;
}

/** Runs sparsify IN OUT and checks everything a user would: exit 0, files, fsck, table, input, size. */
async function sparsifyAndCheck(f: Fixture, outFormat: 'raw' | 'qcow2', extra: string[] = [], inspect?: (out: string) => Promise<void>, cliTimeoutMs?: number) {
  const tmp = await makeRunTmp();
  const out = join(tmp, `out.${outFormat}`);
  const json = join(tmp, 'report.json');
  const runTmp = join(tmp, 'work');
  await mkdir(runTmp);
  try {
    const r = await runCli(['--convert', outFormat, '--json', json, '--tmp', runTmp, ...extra, f.dirty.imagePath, out], {}, cliTimeoutMs);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.exitCode).toBe(0);
    expect(await sha256File(f.dirty.imagePath)).toBe(f.dirtySha);
    expect(await leftoversUnder(runTmp)).toEqual([]);
    const verdict = await verifyImage(out, outFormat, f.dirty.manifestPath);
    expect(verdict.problems).toEqual([]);
    expect(verdict.ok).toBe(true);
    const report = await readReport(json);
    await inspect?.(out);
    return { out, report, outAllocated: await allocatedBytes(out) };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Bytes the output may hold: what the clean twin holds, plus deleted data on volumes copied as is. */
async function allowedBytes(f: Fixture, report: RunReport): Promise<number> {
  const cleanAllocated = await allocatedBytes(f.clean.imagePath);
  const asIs = report.volumes.filter((v) => v.handled === 'copied as is').length;
  return cleanAllocated * 1.05 + asIs * GARBAGE_MIB * 1024 * 1024;
}

describeIntegration('copy mode end to end: GPT with ext4, xfs, ntfs, vfat, swap, btrfs', { tools: TOOLS, root: true }, () => {
  let raw: Fixture;
  let qcow2: Fixture;
  beforeAll(async () => {
    ({ raw, qcow2 } = await allFixtures().gpt);
  }, 600_000);
  /** The uncompressed map-engine copy both --compress cases hold their output against: run (and checked) once. */
  let plainMapCopy: ReturnType<typeof sparsifyAndCheck> | undefined;

  it('raw → qcow2 with --engine mount: files identical, fsck clean, input unchanged, vfat reported as copied as is', async () => {
    const { report, outAllocated } = await sparsifyAndCheck(raw, 'qcow2', ['--engine', 'mount']);
    const byName = Object.fromEntries(report.volumes.map((v) => [v.name, v]));
    const vfat = report.volumes.find((v) => v.type === 'vfat');
    expect(vfat?.handled).toBe('copied as is');
    expect(vfat?.reason).toMatch(/vfat/);
    for (const v of report.volumes) {
      if (['ext4', 'xfs', 'btrfs', 'ntfs'].includes(v.type)) expect(v.handled, v.name).toMatch(/trimmed|zero-filled/);
      if (v.type === 'swap') expect(v.handled).toBe('swap cleared');
    }
    expect(Object.keys(byName)).toHaveLength(6);
    expect(outAllocated).toBeLessThanOrEqual(await allowedBytes(raw, report));
    expect(report.input.allocatedBytes - outAllocated).toBeGreaterThan(4 * GARBAGE_MIB * 1024 * 1024);
  });

  it('qcow2 → qcow2 (default engine: vfat and swap from their own maps, nothing copied as is)', async () => {
    const { report, outAllocated } = await sparsifyAndCheck(qcow2, 'qcow2');
    const byType = (t: string) => report.volumes.find((v) => v.type === t);
    expect(byType('vfat')).toMatchObject({ action: 'map', handled: 'free blocks skipped' });
    expect(byType('vfat')?.reclaimedBytes).toBeGreaterThan(GARBAGE_MIB * 1024 * 1024 * 0.9);
    expect(byType('swap')).toMatchObject({ action: 'map', handled: 'free blocks skipped' });
    expect(report.volumes.filter((v) => v.handled === 'copied as is')).toEqual([]);
    expect(outAllocated).toBeLessThanOrEqual(await allowedBytes(qcow2, report));
  });

  it('qcow2 → raw: a sparse file', async () => {
    const { report, outAllocated } = await sparsifyAndCheck(qcow2, 'raw');
    expect(outAllocated).toBeLessThanOrEqual(await allowedBytes(qcow2, report));
  });

  it.each(['zlib', 'zstd'])('--compress -o compression_type=%s: qemu-img check clean, compressed clusters, smaller than uncompressed', async (type) => {
    // About the compressed output: the map engine alone (btrfs copied as is), no appliance launch per run.
    const plain = await (plainMapCopy ??= sparsifyAndCheck(raw, 'qcow2', ['--engine', 'map']));
    const { report, outAllocated } = await sparsifyAndCheck(raw, 'qcow2', ['--engine', 'map', '--compress', '-o', `compression_type=${type}`], async (out) => {
      const check = JSON.parse(execFileSync('qemu-img', ['check', '--output=json', out], { encoding: 'utf8' })) as Record<string, number>;
      expect([check['corruptions'] ?? 0, check['leaks'] ?? 0, check['check-errors']]).toEqual([0, 0, 0]);
      expect(check['compressed-clusters']).toBeGreaterThan(0); // the fixture's files are mostly random: stored as is
      const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', out], { encoding: 'utf8' })) as {
        'format-specific': { data: { 'compression-type': string } };
      };
      expect(info['format-specific'].data['compression-type']).toBe(type);
    });
    expect(report.output?.compressed).toBe(true);
    expect(outAllocated).toBeLessThan(plain.outAllocated);
  });
});

describeIntegration('copy mode end to end: MBR with logical partitions, and a whole-disk filesystem', { tools: TOOLS, root: true }, () => {
  // Built before the cases (the hook's timeout, not a case's, covers a build under load).
  let mbr: Fixture;
  let wholeRaw: Fixture;
  let wholeQcow2: Fixture;
  beforeAll(async () => {
    const all = allFixtures();
    mbr = await all.mbr;
    ({ raw: wholeRaw, qcow2: wholeQcow2 } = await all.whole);
  }, 600_000);

  it('MBR: ext4 and xfs primary; ext3, swap, ntfs, btrfs logical', { timeout: 300_000 }, async () => {
    const f = mbr;
    // An appliance starts (ntfs, btrfs): under TCG on a loaded machine that alone can take minutes.
    const { report, outAllocated } = await sparsifyAndCheck(f, 'qcow2', [], undefined, 270_000);
    expect(report.partitionTable).toBe('mbr');
    expect(report.volumes.map((v) => v.name)).toEqual(['/dev/sda1', '/dev/sda2', '/dev/sda5', '/dev/sda6', '/dev/sda7', '/dev/sda8']);
    expect(outAllocated).toBeLessThanOrEqual(await allowedBytes(f, report));
  });

  it('whole-disk ext4, raw → raw', async () => {
    const f = wholeRaw;
    const { report, outAllocated } = await sparsifyAndCheck(f, 'raw');
    expect(report.partitionTable).toBe('none');
    expect(report.volumes[0]).toMatchObject({ name: '/dev/sda', type: 'ext4', handled: 'free blocks skipped' });
    expect(outAllocated).toBeLessThanOrEqual(await allowedBytes(f, report));
    expect((await stat(f.dirty.imagePath)).size).toBe(512 * 1024 * 1024);
  });

  it('whole-disk ext4, qcow2 → raw with --engine mount: the copier reads the trimmed overlay, not the input', async () => {
    // The input alone would be read from its file (src/copy/copy-source.ts), deleted data and all.
    const f = wholeQcow2;
    const { report, outAllocated } = await sparsifyAndCheck(f, 'raw', ['--engine', 'mount']);
    expect(report.volumes[0]).toMatchObject({ name: '/dev/sda', handled: 'trimmed' });
    expect(outAllocated).toBeLessThanOrEqual(await allowedBytes(f, report));
  }, 300_000);
});
