/**
 * Every input format qemu can write, sparsified to qcow2 and raw: the layout and filesystem
 * readers ask for a few bytes anywhere, and a vhdx export refuses reads that are not aligned to
 * its 512-byte minimum block size (issue 7, finding 3).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File, verifyImage } from '../helpers/verify.js';

const INPUT_FORMATS = ['qcow2', 'raw', 'vmdk', 'vdi', 'vhdx', 'vpc'] as const;
type InputFormat = (typeof INPUT_FORMATS)[number];

/** vpc rounds the virtual size to its CHS geometry unless told not to. */
const CREATE_OPTIONS: Partial<Record<InputFormat, string[]>> = { vpc: ['-o', 'force_size=on'] };

const TOOLS = ['qemu-img', 'qemu-storage-daemon', 'losetup', 'ntfs-3g', 'mkfs.ntfs', 'mkfs.vfat', 'sfdisk'];

describeIntegration('every qemu input format, to qcow2 and raw', { tools: TOOLS, root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let work: string;
  const inputs = new Map<InputFormat, string>();

  beforeAll(async () => {
    // The MBR fixture of fixtures.test.ts: six filesystems, logical partitions, 1 GiB.
    image = await buildImage({
      layout: 'mbr', fs: ['ext4', 'vfat', 'ext3', 'swap', 'ntfs', 'ext2'], size: '1G', fillMiB: 4, garbageMiB: 16,
      format: 'qcow2',
    });
    dir = await makeRunTmp();
    work = join(dir, 'work');
    await mkdir(work);
    for (const format of INPUT_FORMATS) {
      const path = join(dir, `in.${format}`);
      execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', format, ...(CREATE_OPTIONS[format] ?? []), image.imagePath, path]);
      inputs.set(format, path);
    }
  }, 300_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function sparsify(input: InputFormat, args: string[], out: string) {
    const path = inputs.get(input)!;
    const before = await sha256File(path);
    const json = join(dir, 'report.json');
    const r = await runCli(['--tmp', work, '--json', json, '-q', ...args, path, out]);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await sha256File(path)).toBe(before);
    expect(await leftoversUnder(work)).toEqual([]);
    return readReport(json);
  }

  it.each(INPUT_FORMATS.flatMap((input) => (['qcow2', 'raw'] as const).map((output) => [input, output] as const)))(
    '%s → %s: every file identical, fsck clean, the input unchanged',
    async (input, output) => {
      const out = join(dir, `${input}-to.${output}`);
      const report = await sparsify(input, ['--format', input, '--convert', output], out);
      expect(report.input.format).toBe(input);
      expect(report.volumes.map((v) => v.handled)).not.toContain('copied as is');
      expect((await verifyImage(out, output, image.manifestPath)).problems).toEqual([]);
      await rm(out);
    },
  );

  it('vhdx → vhdx with the format probed (the command of the issue)', async () => {
    const out = join(dir, 'out.vhdx');
    await sparsify('vhdx', [], out);
    const raw = join(dir, 'out-vhdx.raw');
    execFileSync('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', out, raw]);
    expect((await verifyImage(raw, 'raw', image.manifestPath)).problems).toEqual([]);
    await rm(raw);
    await rm(out);
  });
});
