/**
 * --keep-backing (issue 13) with real qemu: a qcow2 base holding an ext4 fixture (whose own
 * deleted files lie in the base), and a qcow2 over it, named relatively as `base.qcow2`, in which
 * a file was written and kept and 48 MiB of files were written and deleted through a kernel
 * mount of the overlay's FUSE export. OUT must be a qcow2 over the same base holding only the
 * top layer, reading (through its chain) exactly as a flattened sparsified copy does.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { openLoopDevice } from '../../src/host/loop.js';
import { openMount } from '../../src/host/mounts.js';
import { serveImage } from '../../src/qemu/storage-daemon.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, readManifest, sha256File, verifyImage } from '../helpers/verify.js';

const MiB = 1024 * 1024;
const JUNK_MIB = 48;
const TOOLS = ['qemu-img', 'qemu-storage-daemon', 'losetup', 'mount', 'e2fsck'];

interface Info {
  'backing-filename'?: string;
  'backing-filename-format'?: string;
  'full-backing-filename'?: string;
  format: string;
}
const info = (path: string) => JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-U', path]).toString()) as Info;
/** `qemu-img compare` exit code: 0 when both images read the same, each through its own chain. */
function compare(a: string, b: string): number {
  try {
    execFileSync('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'qcow2', a, b], { stdio: 'pipe' });
    return 0;
  } catch (err) {
    return (err as { status: number }).status;
  }
}

describeIntegration('--keep-backing: a qcow2 over a backing file copied with its chain kept', { tools: TOOLS, root: true }, () => {
  let fixture: BuiltImage;
  let dir: string;
  let tmp: string;
  let base: string;
  let top: string;
  let topManifest: string;
  let flat: string;
  let before: { base: string; top: string };

  beforeAll(async () => {
    // The same fixture as libvirt-batch.test.ts (cached): MBR, one ext4 with 32 MiB deleted in it.
    fixture = await buildImage({ layout: 'mbr', fs: ['ext4'], size: '256M', fillMiB: 16, garbageMiB: 32, format: 'qcow2', seed: 32 });
    dir = await makeRunTmp();
    tmp = join(dir, 'tmp');
    await mkdir(tmp);
    base = join(dir, 'base.qcow2');
    top = join(dir, 'top.qcow2');
    await copyImage(fixture.imagePath, base);
    // Named as the user would: relative to the overlay's directory.
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'base.qcow2', top]);
    const kept = await writeIntoTop();
    const manifest = await readManifest(fixture.manifestPath);
    const volumes = manifest.volumes.map((v) => ({ ...v, files: { ...v.files, 'kept/new.bin': kept } }));
    topManifest = join(dir, 'top.manifest.json');
    await writeFile(topManifest, JSON.stringify({ ...manifest, volumes }));
    before = { base: await sha256File(base), top: await sha256File(top) };
    flat = join(dir, 'flat.qcow2');
    const r = await runCli([top, flat], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Chain:  flattened (backing file ${base})`);
  }, 600_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Writes kept/new.bin (1 MiB, kept) and JUNK_MIB of files (deleted) into the overlay's ext4; returns the kept file's sha256. */
  async function writeIntoTop(): Promise<string> {
    const ctx = makeContext();
    const volume = (await readManifest(fixture.manifestPath)).volumes[0]!;
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const kept = randomBytes(MiB);
    {
      await using served = await serveImage(ctx, { file: top, format: 'qcow2', readOnly: false, discard: false, fuse: true, dir });
      await using loop = await openLoopDevice(ctx, { file: served.fuseFile!, offsetBytes: volume.offsetBytes, sizeBytes: volume.sizeBytes, readOnly: false });
      await using m = await openMount(ctx, { device: loop.path, mountPoint: mnt, fsType: 'ext4', options: [] });
      await mkdir(join(m.mountPoint, 'kept'));
      await writeFile(join(m.mountPoint, 'kept', 'new.bin'), kept);
      for (let i = 0; i < JUNK_MIB / 8; i++) await writeFile(join(m.mountPoint, `junk-${i}.bin`), randomBytes(8 * MiB));
      execFileSync('sync', ['-f', m.mountPoint]);
      for (let i = 0; i < JUNK_MIB / 8; i++) await rm(join(m.mountPoint, `junk-${i}.bin`));
    }
    return createHash('sha256').update(kept).digest('hex');
  }

  it('OUT is a qcow2 over IN\'s base as IN names it; every file identical, fsck clean; it reads as the flattened copy; far smaller; IN and base unchanged; the report says so', async () => {
    const out = join(dir, 'kept.qcow2');
    const json = join(dir, 'kept.json');
    const r = await runCli(['--keep-backing', top, out, '--json', json], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('Chain:  kept the backing chain (base.qcow2)');
    expect(JSON.parse(await readFile(json, 'utf8')).chain).toEqual({ handled: 'kept', base: 'base.qcow2' });
    const i = info(out);
    expect([i.format, i['backing-filename'], i['backing-filename-format'], i['full-backing-filename']]).toEqual(['qcow2', 'base.qcow2', 'qcow2', base]);
    // Every file (the fixture's and the one written in the top layer) read through the chain; fsck clean.
    expect((await verifyImage(out, 'qcow2', topManifest)).problems).toEqual([]);
    // The free blocks read as zero, in the base's deleted files as in the top's: byte for byte the flattened sparsified copy.
    expect(compare(out, flat)).toBe(0);
    // The top layer held the 48 MiB written and deleted, and the base 16 MiB of files: OUT holds neither.
    const outBytes = await allocatedBytes(out);
    expect(outBytes).toBeLessThan((await allocatedBytes(top)) - 0.9 * JUNK_MIB * MiB);
    expect(outBytes).toBeLessThan((await allocatedBytes(flat)) / 3);
    expect({ base: await sha256File(base), top: await sha256File(top) }).toEqual(before);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 300_000);

  it('an empty top over the base: the free blocks only the base holds data for become zero clusters in OUT, which reads as the base\'s own sparsified copy', async () => {
    const empty = join(dir, 'empty-top.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'base.qcow2', empty]);
    const baseFlat = join(dir, 'base-flat.qcow2');
    const out = join(dir, 'empty-kept.qcow2');
    for (const args of [[base, baseFlat], ['--keep-backing', empty, out]]) {
      const r = await runCli(args, { TMPDIR: tmp });
      expect(r.exitCode, r.stderr).toBe(0);
    }
    // The fixture's 32 MiB of deleted files, still in the base, read as zero through OUT.
    expect(compare(out, baseFlat)).toBe(0);
    const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', '-U', out]).toString()) as { length: number; depth: number; zero: boolean; data: boolean }[];
    const zeroClusters = map.filter((e) => e.depth === 0 && e.zero && !e.data).reduce((n, e) => n + e.length, 0);
    expect(zeroClusters).toBeGreaterThan(0.9 * 32 * MiB);
    expect(await allocatedBytes(out)).toBeLessThan(2 * MiB);
  }, 300_000);

  it('with the mount engine, whose trims and mount writes land in an overlay over IN: --verify finds OUT reading as the overlay, files identical, small', async () => {
    const out = join(dir, 'mounted.qcow2');
    const r = await runCli(['--keep-backing', '--engine', 'mount', '--verify', top, out], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Verify: ok: /m);
    expect((await verifyImage(out, 'qcow2', topManifest)).problems).toEqual([]);
    // Not compared with the flattened copy: mounting wrote the superblock's mount count and times.
    expect(await allocatedBytes(out)).toBeLessThan((await allocatedBytes(flat)) / 3);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 300_000);

  it('OUT in another directory names the base by its full path, so the chain still resolves', async () => {
    const elsewhere = join(dir, 'elsewhere');
    await mkdir(elsewhere);
    const out = join(elsewhere, 'kept.qcow2');
    const r = await runCli(['--keep-backing', top, out], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Chain:  kept the backing chain (${base})`);
    expect(info(out)['backing-filename']).toBe(base);
    expect(compare(out, flat)).toBe(0);
  }, 300_000);

  it('a batch with --keep-backing keeps the chain of the disk that has one and copies the disk with none as it is', async () => {
    const outDir = join(dir, 'batch-out');
    await mkdir(outDir);
    const r = await runCli(['--keep-backing', '--output-dir', outDir, top, base], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    const [chained, plain] = [info(join(outDir, 'top.qcow2')), info(join(outDir, 'base.qcow2'))];
    expect([chained.format, chained['backing-filename']]).toEqual(['qcow2', base]);
    expect([plain.format, plain['backing-filename']]).toEqual(['qcow2', undefined]);
    expect(compare(join(outDir, 'top.qcow2'), flat)).toBe(0);
    expect((await verifyImage(join(outDir, 'base.qcow2'), 'qcow2', fixture.manifestPath)).problems).toEqual([]);
    expect({ base: await sha256File(base), top: await sha256File(top) }).toEqual(before);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 300_000);

  it('--keep-backing with no chain to keep, or into another format, is one line, exit 1, no output left; in place the chain is refused', async () => {
    const cases: [string[], string][] = [
      [['--keep-backing', base, join(dir, 'no-chain.qcow2')], `sparsify: error: --keep-backing: ${base} has no backing file, so there is no chain to keep`],
      [['--keep-backing', '--convert', 'raw', top, join(dir, 'raw.img')], `sparsify: error: --keep-backing writes a qcow2 over ${base}, not raw`],
      [['--keep-backing', '--compress', top, join(dir, 'z.qcow2')], `sparsify: error: --keep-backing writes a qcow2 over ${base}, not a compressed qcow2`],
    ];
    for (const [args, line] of cases) {
      const r = await runCli(args, { TMPDIR: tmp });
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stderr.split('\n')).toContain(line);
    }
    const inPlace = await runCli(['--in-place', top], { TMPDIR: tmp });
    expect(inPlace.exitCode).toBe(1);
    expect(inPlace.stderr.split('\n')).toContain(`sparsify: error: ${top} has a backing file: refused in place, where only its own clusters could be freed`);
    const left = execFileSync('ls', [dir]).toString().split('\n');
    expect(left.filter((f) => /^(no-chain|raw|z)\./.test(f))).toEqual([]);
    expect({ base: await sha256File(base), top: await sha256File(top) }).toEqual(before);
  }, 120_000);
});
