/**
 * Memory stays bounded whatever the image's size: on a 1 TiB image (raw and qcow2) holding 3 GiB
 * of files spread over four partitions, sparsify's own node process peaks under 256 MiB of
 * resident memory copying to raw, to qcow2, compressed (--compress) and in place.
 *
 * What is counted: the node process that is sparsify (its buffers, worker threads and V8 heap),
 * by its VmHWM and by /usr/bin/time's %M (which also covers each child it reaped, one at a time).
 * The qemu-storage-daemons it starts are other programs, counted on their own: their peaks and
 * the sum of all the tree's peaks are printed (the README quotes them), not held to the limit.
 * Each output is compared with its input by qemu-img compare over the whole TiB.
 * About a minute to build the images (removed afterwards), then 20–90 s per run on 2 idle cores.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildBigImage, type BigImage } from '../helpers/big-image.js';
import { leftoversUnder, makeRunTmp } from '../helpers/cli.js';
import { copyImage } from '../helpers/image.js';
import { runCliMeasured, type MeasuredRun } from '../helpers/peak-rss.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const LIMIT_BYTES = 256 * MiB;
const RUN_TIMEOUT_MS = 900_000;
/** ext4's bitmaps, descriptors, journal blocks and the GPT, which the copy reads besides the files. */
const METADATA_BYTES = 256 * MiB;

describeIntegration(
  'peak memory on a 1 TiB image with 3 GiB of data',
  { tools: ['qemu-img', 'qemu-storage-daemon', 'sgdisk', 'losetup', 'mkfs.ext4', 'openssl', '/usr/bin/time'], root: true },
  () => {
    let image: BigImage;
    let dir: string;
    let work: string;

    beforeAll(async () => {
      dir = await makeRunTmp();
      work = join(dir, 'work');
      await mkdir(work);
      image = await buildBigImage(dir);
      console.log(`1 TiB image: data per quarter of the disk ${image.dataBytesPerQuarter.map((b) => `${(b / MiB).toFixed(0)} MiB`).join(', ')}`);
      // The files really lie a quarter of a TiB apart: 768 MiB in each quarter.
      for (const bytes of image.dataBytesPerQuarter) expect(bytes).toBeGreaterThanOrEqual(image.fileBytes / 4);
    }, RUN_TIMEOUT_MS);
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** Runs sparsify, prints each process's peak, checks the run and node's peak. */
    async function measured(name: string, format: string, args: string[], limitBytes = LIMIT_BYTES): Promise<MeasuredRun> {
      const json = join(dir, `${name}.json`);
      const r = await runCliMeasured(['-q', '--json', json, '--format', format, ...args], join(dir, `${name}.time`), { TMPDIR: work });
      expect(r.exitCode, r.stderr).toBe(0);
      const children = r.childPeaks.map((p) => `${p.name} ${mib(p.peakBytes)}`).join(', ');
      console.log(`${name}: sparsify (node) ${mib(r.nodePeakBytes)}, time %M ${mib(r.maxRssBytes)}; children: ${children}; tree ${mib(r.treePeakBytes)}`);
      const report = await readReport(json);
      if (report.copy) expect(report.copy.readBytes).toBeLessThan(image.fileBytes + METADATA_BYTES);
      expect(await leftoversUnder(work)).toEqual([]);
      expect(r.nodePeakBytes).toBeGreaterThan(0);
      expect(r.nodePeakBytes).toBeLessThan(limitBytes);
      expect(r.maxRssBytes).toBeLessThan(limitBytes);
      return r;
    }

    async function expectSameContent(input: string, inputFormat: string, output: string, outputFormat: string): Promise<void> {
      const r = await run('qemu-img', ['compare', '-f', inputFormat, '-F', outputFormat, input, output]).catch((e: { stdout?: string; stderr?: string }) => e);
      expect(`${r.stdout ?? ''}${r.stderr ?? ''}`).toContain('Images are identical');
    }

    it('copy raw to raw', async () => {
      const out = join(dir, 'out.raw');
      await measured('raw to raw', 'raw', [image.rawPath, out]);
      await expectSameContent(image.rawPath, 'raw', out, 'raw');
      await rm(out);
    }, RUN_TIMEOUT_MS);

    it('copy qcow2 to qcow2', async () => {
      const out = join(dir, 'out.qcow2');
      const r = await measured('qcow2 to qcow2', 'qcow2', [image.qcow2Path, out]);
      // One daemon, serving the input: sparsify writes the qcow2 output itself (src/qcow2/plain-sink.ts).
      expect(r.childPeaks.filter((p) => p.name.startsWith('qemu-storage'))).toHaveLength(1);
      await expectSameContent(image.qcow2Path, 'qcow2', out, 'qcow2');
      await rm(out);
    }, RUN_TIMEOUT_MS);

    it('copy qcow2 with --compress', async () => {
      const out = join(dir, 'out-compressed.qcow2');
      await measured('qcow2 --compress', 'qcow2', ['--compress', image.qcow2Path, out]);
      await expectSameContent(image.qcow2Path, 'qcow2', out, 'qcow2');
      await rm(out);
    }, RUN_TIMEOUT_MS);

    it('in place, raw', async () => {
      const copy = join(dir, 'in-place.raw');
      await copyImage(image.rawPath, copy);
      await measured('in place raw', 'raw', ['--in-place', copy]);
      await expectSameContent(image.rawPath, 'raw', copy, 'raw');
      await rm(copy);
    }, RUN_TIMEOUT_MS);

    it('in place, qcow2', async () => {
      const copy = join(dir, 'in-place.qcow2');
      await copyImage(image.qcow2Path, copy);
      await measured('in place qcow2', 'qcow2', ['--in-place', copy]);
      await expectSameContent(image.qcow2Path, 'qcow2', copy, 'qcow2');
      await rm(copy);
    }, RUN_TIMEOUT_MS);
  },
);

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`;
}
