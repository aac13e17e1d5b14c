/**
 * Partition-table structures inside a filesystem's free blocks survive every engine, in copy mode
 * and in place: an EBR inside logical 5's ext4 (issue 7, finding 2) and GPT entry arrays inside
 * the partitions they describe.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, readManifest, verifyImage } from '../helpers/verify.js';
import { buildEbrInFreeSpace, buildGptEntriesInPartitions, type HandMade } from './protected-images.js';

const TOOLS = ['qemu-img', 'qemu-storage-daemon', 'losetup', 'fstrim', 'sfdisk', 'sgdisk', 'mkfs.ext4', 'debugfs', 'e2fsck'];

/** The partitions `sfdisk` lists: number, first sector, sectors. */
async function partitions(image: string): Promise<[number, number, number][]> {
  const { stdout } = await execa('sfdisk', ['--json', image]);
  const table = (JSON.parse(stdout) as { partitiontable: { partitions: { node: string; start: number; size: number }[] } }).partitiontable;
  return table.partitions.map((p) => [Number(/(\d+)$/.exec(p.node)![1]), p.start, p.size]);
}

describeIntegration('protected ranges', { tools: TOOLS, root: true }, () => {
  let dir: string;
  let tmp: string;
  let ebr: HandMade;
  let gpt: HandMade;

  beforeAll(async () => {
    dir = await makeRunTmp();
    tmp = await makeRunTmp();
    ebr = await buildEbrInFreeSpace(dir);
    gpt = await buildGptEntriesInPartitions(dir);
    // The hand-made tables are what Linux sees: logical 6 behind an EBR inside logical 5.
    expect((await partitions(ebr.imagePath)).map((p) => p[0])).toEqual([1, 2, 5, 6]);
    expect((await partitions(gpt.imagePath)).map((p) => p[0])).toEqual([1, 2]);
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(tmp, { recursive: true, force: true });
  });

  /** Runs sparsify in copy mode or in place on a private copy; returns the result image and report. */
  async function sparsify(image: HandMade, mode: 'copy' | 'in-place', extra: string[]) {
    const name = `${mode}-${extra.join('').replace(/\W/g, '')}-${Date.now()}`;
    const json = join(dir, `${name}.json`);
    let out: string;
    let r;
    if (mode === 'copy') {
      out = join(dir, `${name}.raw`);
      r = await runCli(['--format', 'raw', '--json', json, ...extra, image.imagePath, out], { TMPDIR: tmp });
    } else {
      out = join(dir, `${name}.raw`);
      await copyImage(image.imagePath, out);
      r = await runCli(['--in-place', '--format', 'raw', '--json', json, ...extra, out], { TMPDIR: tmp });
    }
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await leftoversUnder(tmp)).toEqual([]);
    const report = await readReport(json);
    return { out, report, stderr: r.stderr };
  }

  /** Same partitions as the input, every file identical, fsck clean, table sectors identical, and space reclaimed. */
  async function expectIntact(image: HandMade, out: string, manifestPath = image.manifestPath): Promise<void> {
    expect(await partitions(out)).toEqual(await partitions(image.imagePath));
    expect((await verifyImage(out, 'raw', manifestPath)).problems).toEqual([]);
    expect(await allocatedBytes(out)).toBeLessThan((await allocatedBytes(image.imagePath)) / 2);
  }

  const RUNS = [
    ['copy', 'map', []],
    ['copy', 'mount', ['--engine', 'mount']],
    ['in-place', 'map', []],
    ['in-place', 'mount', ['--engine', 'mount']],
  ] as const;

  it.each(RUNS)('EBR in logical 5 free blocks, %s mode, %s engine: partitions 1, 5 and 6 and their files survive', async (mode, engine, extra) => {
    const { out, report, stderr } = await sparsify(ebr, mode, [...extra]);
    expect((await partitions(out)).map((p) => p[0])).toEqual([1, 2, 5, 6]);
    await expectIntact(ebr, out);
    const l5 = report.volumes.find((v) => v.name === '/dev/sda5')!;
    expect(l5.handled).toBe(engine === 'map' ? (mode === 'copy' ? 'free blocks skipped' : 'free blocks discarded') : 'trimmed');
    // The map engine never touches protected bytes. With the mount engine, ext4's FITRIM
    // discards a whole free extent that starts inside the range it is given, so the belt may
    // have had to write the EBR back (with a warning): the result is what counts.
    if (engine === 'map') expect(stderr).not.toMatch(/written back/);
  });

  it.each(['copy', 'in-place'] as const)('--zero of logical 5 (%s) keeps the EBR inside it', async (mode) => {
    const { out } = await sparsify(ebr, mode, ['--zero', '/dev/sda5']);
    expect((await partitions(out)).map((p) => p[0])).toEqual([1, 2, 5, 6]);
    const manifest = await readManifest(ebr.manifestPath);
    const withoutL5 = join(dir, `no-l5-${mode}.manifest.json`);
    await writeFile(withoutL5, JSON.stringify({ ...manifest, volumes: manifest.volumes.filter((v) => v.name !== '/dev/sda5') }));
    await expectIntact(ebr, out, withoutL5);
  });

  it.each(RUNS)('GPT entry arrays inside partitions 1 and 2, %s mode, %s engine: both copies and every file survive', async (mode, engine, extra) => {
    const { out, stderr } = await sparsify(gpt, mode, [...extra]);
    expect(stderr).toMatch(/GPT partition entry array at LBA \d+–\d+ lies inside the usable LBAs/);
    if (engine === 'map') expect(stderr).not.toMatch(/written back/);
    // The manifest's table ranges hold both headers and both entry arrays: both copies are intact.
    await expectIntact(gpt, out);
  });
});
