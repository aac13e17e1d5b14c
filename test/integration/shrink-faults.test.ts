/**
 * `sparsify --shrink` failing on purpose at its steps (issue 12): a resize refused (an ext4 with
 * a feature bit e2fsck and resize2fs do not know: the check before the resize fails), a btrfs that
 * fails its check (a leaf of its tree damaged in both copies: btrfs check before the resize, in
 * the appliance, says no), a file that differs after the resize (no real fault makes one that
 * e2fsck misses, so the test-only hook src/shrink/test-hook.ts appends a byte to one file between
 * the listing before the resize and the one after) and no space for the output (OUT's directory a 4 MiB tmpfs). Each: exit 1 (README, "Exit codes") with one
 * `sparsify: error:` line naming what failed, no output and nothing else left behind, and IN's
 * sha256 unchanged.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { damageBtrfsLeaf } from '../helpers/btrfs-damage.js';
import { CaseCheck, leftoversOf, makeCaseDirs, mountTmpfs, scrub, type RunEnd } from '../helpers/faults.js';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { runShrinkCli, SHRINK_RUN_MS } from '../helpers/shrink-run.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const MiB = 1 << 20;

/** Shared with outputs, bad-input and job-tree: GPT, one ext4. */
const fixture = () => buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 8, garbageMiB: 16, seed: 5 });

async function shrinkRun(args: readonly string[], work: string, env: Record<string, string> = {}): Promise<RunEnd> {
  const r = await runShrinkCli(['--shrink', '-f', 'raw', ...args], { TMPDIR: work, ...env });
  return { ...r, signal: null, hung: false };
}

/** Shared with appliance.test: GPT, an ext4 then a btrfs (DUP metadata, a subvolume and a snapshot). */
const btrfsFixture = () => buildImage({ layout: 'gpt', fs: ['ext4', 'btrfs'], size: '320M', fillMiB: 8, garbageMiB: 32, seed: 3 });

/** Runs `fn` with a loop device over `volume`'s bytes of `file`, detached afterwards. */
async function withLoop<T>(file: string, volume: { offsetBytes: number; sizeBytes: number }, readOnly: boolean, fn: (dev: string) => Promise<T>): Promise<T> {
  const dev = (await execFileAsync('losetup', ['--find', '--show', ...(readOnly ? ['--read-only'] : []), '-o', String(volume.offsetBytes), '--sizelimit', String(volume.sizeBytes), file])).stdout.trim();
  try {
    return await fn(dev);
  } finally {
    await execFileAsync('losetup', ['-d', dev]);
  }
}

/** A copy of `image`, damaged by `damage`, shrunk: exit 1 with one error line matching `message`, no output left, the copy unchanged by the run. */
async function expectDamagedCopyRefused(name: string, image: BuiltImage, damage: (input: string) => Promise<unknown>, message: RegExp): Promise<void> {
  const dirs = await makeCaseDirs();
  try {
    const input = join(dirs.root, 'in.raw');
    await copyImage(image.imagePath, input);
    await damage(input);
    const before = await sha256File(input);
    const end = await shrinkRun([input, join(dirs.out, 'o.raw')], dirs.work);
    const c = new CaseCheck(name);
    c.failed(end, message);
    c.input((await sha256File(input)) === before, 'sha256 differs');
    c.found(await leftoversOf(dirs, [], [input]));
    expect(c.record().problems).toEqual([]);
  } finally {
    await scrub(dirs.root);
  }
}

describeIntegration('sparsify --shrink failing at a step', { tools: ['guestfish', 'qemu-img', 'debugfs', 'btrfs', 'losetup', 'mount'], root: true }, () => {
  it('a resize refused (e2fsck cannot check the filesystem): exit 1 naming the check, no output, IN unchanged', async () => {
    const image = await fixture();
    await expectDamagedCopyRefused(
      'resize refused',
      image,
      // An incompatible feature bit no e2fsprogs knows: e2fsck and resize2fs both refuse the filesystem.
      (input) => withLoop(input, image.manifest.volumes[0]!, false, (dev) => execFileAsync('debugfs', ['-w', '-R', 'feature FEATURE_I30', dev])),
      /^sparsify: error: --shrink: checking \/dev\/sda1 before the resize \(e2fsck -f\) failed: e2fsck\b/,
    );
  }, SHRINK_RUN_MS);

  it('a btrfs failing its check (a tree leaf damaged in both copies): exit 1 naming btrfs check of /dev/sda2, no output, IN unchanged', async () => {
    const image = await btrfsFixture();
    const btrfs = image.manifest.volumes[1]!;
    await expectDamagedCopyRefused(
      'btrfs check failed',
      image,
      async (input) => {
        expect((await damageBtrfsLeaf(input, btrfs.offsetBytes, btrfs.sizeBytes)).copies).toBeGreaterThanOrEqual(1);
        // The damage is real: btrfs check on the host finds it too.
        const hostCheck = await withLoop(input, btrfs, true, async (dev) => {
          try {
            return await execFileAsync('btrfs', ['check', '--readonly', dev]).then(() => 0, (e: { code: number }) => e.code);
          } finally {
            await execFileAsync('btrfs', ['device', 'scan', '--forget', dev]).catch(() => undefined);
          }
        });
        expect(hostCheck).not.toBe(0);
      },
      /^sparsify: error: --shrink: checking \/dev\/sda2 before the resize \(btrfs check --readonly\) failed\b/,
    );
  }, SHRINK_RUN_MS);

  it('a file that differs after the resize (altered by the test hook): exit 1 naming the filesystem and the file, no output, IN unchanged', async () => {
    const image = await fixture();
    const file = 'docs/readme.txt';
    expect(image.manifest.volumes[0]!.files[file]).toBeDefined();
    const dirs = await makeCaseDirs();
    try {
      const before = await sha256File(image.imagePath);
      const end = await shrinkRun([image.imagePath, join(dirs.out, 'o.raw')], dirs.work, { SPARSIFY_TEST_SHRINK_ALTER_FILE: `/dev/sda1:/${file}` });
      const c = new CaseCheck('a file differs after the resize');
      c.failed(end, /^sparsify: error: --shrink: \/dev\/sda1 after the resize: \/docs\/readme\.txt differs$/m);
      c.input((await sha256File(image.imagePath)) === before, 'sha256 differs');
      c.found(await leftoversOf(dirs, []));
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
