/**
 * --verify on the six-filesystem image: it passes in copy mode (qcow2, raw, compressed; the input
 * or the overlay as source) and in place, and fails with one line, exit 1 and no output when a
 * byte of the result is flipped just before the check (the test-only hook).
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli, type CliResult } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';
import type { RunReport } from '../../src/index.js';

const TOOLS = ['qemu-img', 'qemu-storage-daemon', 'losetup', 'fstrim', 'ntfs-3g', 'mkfs.xfs', 'mkfs.btrfs', 'mkfs.ntfs', 'mkfs.vfat', 'sgdisk'];
const CORRUPT = 'SPARSIFY_TEST_CORRUPT_OUTPUT_AT';
/** A byte of the protective MBR: outside every volume, never made zero. */
const MBR_BYTE = 510;
/**
 * The flipped-byte cases leave the btrfs volume alone: the check is the same whatever the
 * engines, and without btrfs no appliance is launched (15-60 s under TCG each).
 */
const NO_APPLIANCE = ['--ignore', '/dev/sda6'];

type VerifyRow = NonNullable<RunReport['verify']>;

describeIntegration('--verify on GPT with ext4, xfs, ntfs, vfat, swap, btrfs', { tools: TOOLS, root: true }, () => {
  let image: BuiltImage;
  let input: string;
  let dir: string;
  let work: string;

  beforeAll(async () => {
    // The image of copy-mode.test.ts and in-place.test.ts, copied: the raw input's lock probe
    // (a writable open) fails while another test file serves the same fixture.
    image = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs', 'ntfs', 'vfat', 'swap', 'btrfs'], size: '2G', fillMiB: 24, garbageMiB: 96, seed: 3 });
    dir = await makeRunTmp();
    work = join(dir, 'work');
    await mkdir(work);
    input = join(dir, 'input.raw');
    await copyImage(image.imagePath, input);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function run(args: string[], env: Record<string, string> = {}): Promise<{ r: CliResult; report?: RunReport }> {
    const json = join(dir, 'report.json');
    await rm(json, { force: true });
    const r = await runCli(['--json', json, ...args], env);
    expect(await leftoversUnder(work)).toEqual([]);
    const report = r.exitCode === 0 ? await readReport(json) : undefined;
    return { r, report };
  }

  function expectPassed(r: CliResult, report: RunReport | undefined): VerifyRow {
    expect(r.stderr).not.toMatch(/error/);
    expect(r.exitCode).toBe(0);
    const v = report!.verify!;
    expect(v.ok).toBe(true);
    expect(v.checkedBytes).toBe(v.identicalBytes + v.zeroBytes);
    expect(v.zeroBytes).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/^Verify: ok: /m);
    return v;
  }

  it.each<[string, string[]]>([
    ['qcow2', []],
    ['raw', ['--engine', 'mount']],
    ['qcow2', ['--compress']],
  ])('copy mode, %s output %j: passes, every byte of the disk checked', async (format, extra) => {
    const out = join(dir, `out.${format}`);
    const { r, report } = await run(['--tmp', work, '--verify', '-f', 'raw', '--convert', format, ...extra, input, out]);
    const v = expectPassed(r, report);
    expect(v.checkedBytes).toBe(report!.input.virtualSizeBytes);
    expect(v.notVerified).toEqual([]);
    // The map engine's free blocks are skipped; the mount engine's trims are in the overlay, the source.
    if (!extra.includes('--engine')) expect(v.zeroBytes).toBeGreaterThan(5 * 90 * 2 ** 20);
    await rm(out);
  });

  it('in place: passes; the volume the appliance (or the mount engine) trimmed is reported as not verified', async () => {
    const disk = join(dir, 'in-place.raw');
    await copyImage(input, disk);
    const { r, report } = await run(['--in-place', '--verify', '-f', 'raw', disk]);
    const v = expectPassed(r, report);
    const mounted = report!.volumes.filter((x) => x.handled === 'trimmed').map((x) => ({ name: x.name, reason: 'mounted' }));
    expect(mounted.length).toBeGreaterThan(0);
    expect(v.notVerified).toEqual(mounted);
    expect(r.stdout).toMatch(/not verified: \/dev\/sda6 \(mounted\)/);
    await rm(disk);
  });

  it('copy mode: a byte flipped before the check fails with exit 1, one error line, and no output left', async () => {
    const out = join(dir, 'flipped.qcow2');
    const before = await sha256File(input);
    const { r } = await run(['--tmp', work, '--verify', '-q', '-f', 'raw', '--convert', 'qcow2', ...NO_APPLIANCE, input, out], { [CORRUPT]: String(MBR_BYTE) });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'))).toEqual([
      `sparsify: error: --verify: the output differs from the source at byte offset ${MBR_BYTE}`,
    ]);
    expect(r.stderr.split('\n').filter((l) => l && !/^sparsify: (error|hint):/.test(l))).toEqual([]);
    // Neither the output nor its partial (.flipped.qcow2.sparsify-PID.partial).
    expect((await readdir(dir)).filter((name) => name.includes('flipped'))).toEqual([]);
    expect(await sha256File(input)).toBe(before);
  });

  it('in place: a byte flipped after the pass fails with exit 1 and one error line', async () => {
    const disk = join(dir, 'in-place-flipped.raw');
    await copyImage(input, disk);
    const { r } = await run(['--in-place', '--verify', '-q', '-f', 'raw', ...NO_APPLIANCE, disk], { [CORRUPT]: String(MBR_BYTE) });
    expect(r.exitCode).toBe(1);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^sparsify: error: --verify: bytes the pass must not change were changed, between byte offsets 0 and \d+ \(.*outside every volume\)$/);
    await rm(disk);
  });
});
