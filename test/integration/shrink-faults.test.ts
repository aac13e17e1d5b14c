/**
 * `sparsify --shrink` failing on purpose at its steps (issue 12): a resize refused (an ext4 with
 * a feature bit e2fsck and resize2fs do not know: the check before the resize fails) and no space
 * for the output (OUT's directory a 4 MiB tmpfs). Each: exit 1 (README, "Exit codes") with one
 * `sparsify: error:` line naming what failed, no output and nothing else left behind, and IN's
 * sha256 unchanged.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { CaseCheck, leftoversOf, makeCaseDirs, mountTmpfs, scrub, type RunEnd } from '../helpers/faults.js';
import { buildImage, copyImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { runShrinkCli, SHRINK_RUN_MS } from '../helpers/shrink-run.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const MiB = 1 << 20;

/** Shared with outputs, bad-input and job-tree: GPT, one ext4. */
const fixture = () => buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 8, garbageMiB: 16, seed: 5 });

async function shrinkRun(args: readonly string[], work: string): Promise<RunEnd> {
  const r = await runShrinkCli(['--shrink', '-f', 'raw', ...args], { TMPDIR: work });
  return { ...r, signal: null, hung: false };
}

describeIntegration('sparsify --shrink failing at a step', { tools: ['guestfish', 'qemu-img', 'debugfs', 'losetup', 'mount'], root: true }, () => {
  it('a resize refused (e2fsck cannot check the filesystem): exit 1 naming the check, no output, IN unchanged', async () => {
    const image = await fixture();
    const dirs = await makeCaseDirs();
    try {
      const input = join(dirs.root, 'in.raw');
      await copyImage(image.imagePath, input);
      const root = image.manifest.volumes[0]!;
      const dev = (await execFileAsync('losetup', ['--find', '--show', '-o', String(root.offsetBytes), '--sizelimit', String(root.sizeBytes), input])).stdout.trim();
      try {
        // An incompatible feature bit no e2fsprogs knows: e2fsck and resize2fs both refuse the filesystem.
        await execFileAsync('debugfs', ['-w', '-R', 'feature FEATURE_I30', dev]);
      } finally {
        await execFileAsync('losetup', ['-d', dev]);
      }
      const before = await sha256File(input);
      const end = await shrinkRun([input, join(dirs.out, 'o.raw')], dirs.work);
      const c = new CaseCheck('resize refused');
      c.failed(end, /^sparsify: error: --shrink: checking \/dev\/sda1 before the resize \(e2fsck -f\) failed: e2fsck\b/);
      c.input((await sha256File(input)) === before, 'sha256 differs');
      c.found(await leftoversOf(dirs, [], [input]));
      expect(c.record().problems).toEqual([]);
    } finally {
      await scrub(dirs.root);
    }
  }, SHRINK_RUN_MS);

  it('no space for the output (a 4 MiB tmpfs): exit 1 saying so, no output, IN unchanged', async () => {
    const image = await fixture();
    const dirs = await makeCaseDirs();
    try {
      await mountTmpfs(dirs.out, 4 * MiB);
      const before = await sha256File(image.imagePath);
      const end = await shrinkRun([image.imagePath, join(dirs.out, 'o.raw')], dirs.work);
      const c = new CaseCheck('no space for the output');
      c.failed(end, /^sparsify: error: .*(no space|No space)/);
      c.input((await sha256File(image.imagePath)) === before, 'sha256 differs');
      c.found(await leftoversOf(dirs, [dirs.out]));
      expect(c.record().problems).toEqual([]);
    } finally {
      await scrub(dirs.root);
    }
  }, SHRINK_RUN_MS);
});
