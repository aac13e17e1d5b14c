/**
 * `--shrink` composes with `--export` (issue 12): one run of `sparsify --shrink --export vmware
 * --ova IN OUT.ova` on a small GPT ext4 fixture (shared with shrink-faults, outputs, bad-input).
 * The OVA's vmdk is a streamOptimized vmdk of the shrunk virtual size that qemu-img check finds
 * clean, its OVF gives that size as the capacity, and the disk inside holds every file of IN at
 * the new places with fsck and sgdisk -v clean; IN is unchanged. (--template, --convert and
 * --compress with --shrink: test/integration/shrink.test.ts, on the Debian guest.)
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseStringPromise } from 'xml2js';
import type { RunReport } from '../../src/report/types.js';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { runShrinkCli, SHRINK_RUN_MS } from '../helpers/shrink-run.js';
import { writeShrunkManifest } from '../helpers/shrunk-manifest.js';
import { sha256File, verifyImage } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);

interface QemuInfo {
  readonly format: string;
  readonly 'virtual-size': number;
  readonly 'format-specific'?: { readonly data: Record<string, unknown> };
}

describeIntegration('sparsify --shrink --export vmware --ova', { tools: ['guestfish', 'qemu-img', 'qemu-storage-daemon', 'sgdisk', 'sfdisk', 'e2fsck', 'losetup', 'tar'], root: true }, () => {
  let dir: string;
  let image: BuiltImage;
  let inputSha: string;
  let report: RunReport;
  let vmdk: string;
  let ovf: string;

  beforeAll(async () => {
    dir = await mkdtemp('/var/tmp/sp-shrink-export-');
    image = await buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 8, garbageMiB: 16, seed: 5 });
    inputSha = await sha256File(image.imagePath);
    const out = join(dir, 'disk.ova');
    const json = join(dir, 'report.json');
    const t = Date.now();
    const r = await runShrinkCli(['--shrink', '--export', 'vmware', '--ova', '--format', 'raw', '--json', json, image.imagePath, out]);
    if (r.exitCode !== 0) throw new Error(`sparsify exited ${r.exitCode}: ${r.stderr}`);
    console.log(`shrink --export vmware --ova: ${((Date.now() - t) / 1000).toFixed(0)} s`);
    report = JSON.parse(await readFile(json, 'utf8')) as RunReport;
    const x = join(dir, 'x');
    await mkdir(x);
    await execFileAsync('tar', ['-xf', out, '-C', x]);
    vmdk = join(x, 'disk-disk1.vmdk');
    ovf = join(x, 'disk.ovf');
  }, SHRINK_RUN_MS);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the vmdk is streamOptimized, of the shrunk virtual size, and qemu-img check finds it clean; the OVF says that size', async () => {
    const shrink = report.shrink!;
    console.log(`shrink --export: ${shrink.virtualSizeBeforeBytes} -> ${shrink.virtualSizeAfterBytes} bytes`);
    expect(shrink.virtualSizeAfterBytes).toBeLessThan(shrink.virtualSizeBeforeBytes);
    expect(shrink.volumes.map((v) => [v.name, v.action])).toEqual([['/dev/sda1', 'resized']]);
    const info = JSON.parse((await execFileAsync('qemu-img', ['info', '--output=json', vmdk])).stdout) as QemuInfo;
    expect({ format: info.format, size: info['virtual-size'], type: info['format-specific']?.data['create-type'] }).toEqual({
      format: 'vmdk',
      size: shrink.virtualSizeAfterBytes,
      type: 'streamOptimized',
    });
    await expect(execFileAsync('qemu-img', ['check', vmdk])).resolves.toBeTruthy();
    const env = (await parseStringPromise(await readFile(ovf, 'utf8'))).Envelope;
    expect(Number(env.DiskSection[0].Disk[0].$['ovf:capacity'])).toBe(shrink.virtualSizeAfterBytes);
  });

  it('the disk inside holds every file of IN at its new place, fsck and sgdisk -v clean; IN is unchanged', async () => {
    const raw = join(dir, 'disk.raw');
    await execFileAsync('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', vmdk, raw]);
    expect((await execFileAsync('sgdisk', ['-v', raw])).stdout).toMatch(/No problems found/);
    const manifest = join(dir, 'disk.manifest.json');
    await writeShrunkManifest(image.manifestPath, raw, manifest);
    const verdict = await verifyImage(raw, 'raw', manifest);
    expect(verdict.problems).toEqual([]);
    expect(verdict.perVolume.every((v) => v.filesChecked > 0)).toBe(true);
    expect(await sha256File(image.imagePath)).toBe(inputSha);
  });
});
