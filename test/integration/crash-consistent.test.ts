/**
 * A crash-consistent snapshot: a disk copied while its ext4 and xfs were mounted and being
 * written. Their on-disk maps are stale until the journals are replayed, so the map engine must
 * refuse them and the mount engine must replay them (in the overlay in copy mode, in the image in
 * place). Afterwards the output holds exactly the files the input holds after replay.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, copyImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { makeCrashSnapshot, readDirtyVolumes, type CrashSnapshot } from '../helpers/crash-snapshot.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

describeIntegration('crash-consistent snapshots: dirty journals are replayed, never read stale', { tools: ['losetup', 'mount', 'qemu-img', 'qemu-storage-daemon', 'e2fsck', 'xfs_repair'], root: true }, () => {
  let dir: string;
  let mnt: string;
  let snapshot: string;
  let crash: CrashSnapshot;

  beforeAll(async () => {
    const base = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs'], size: '1G', fillMiB: 16, garbageMiB: 64, seed: 17 });
    dir = await makeRunTmp();
    mnt = join(dir, 'mnt');
    await mkdir(mnt);
    snapshot = join(dir, 'snapshot.raw');
    crash = await makeCrashSnapshot(base.imagePath, base.manifest, dir, snapshot);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function expectReplayedFiles(image: string): Promise<void> {
    expect(await readDirtyVolumes(image, crash, mnt)).toEqual(crash.truth);
  }

  it('the snapshot really is dirty', async () => {
    const r = await runCli(['--engine', 'map', '--format', 'raw', '--json', join(dir, 'dirty.json'), snapshot, join(dir, 'map-only.raw')]);
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = (await readReport(join(dir, 'dirty.json'))).volumes;
    for (const row of rows) {
      expect(row.handled).toBe('copied as is');
      expect(row.reason).toMatch(/not trusted/);
    }
  });

  it('copy mode: journals replayed in the overlay; output has the replayed files; input unchanged', async () => {
    const sha = await sha256File(snapshot);
    const tmp = join(dir, 'tmp-copy');
    await mkdir(tmp);
    const out = join(dir, 'out.raw');
    const json = join(dir, 'copy.json');
    const r = await runCli(['--engine', 'mount', '--format', 'raw', '--tmp', tmp, '--json', json, snapshot, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = (await readReport(json)).volumes;
    for (const row of rows) {
      expect(row.action).toBe('mount');
      expect(row.reason).toMatch(/not trusted .*replays its journal/);
    }
    expect(await sha256File(snapshot)).toBe(sha);
    expect(await leftoversUnder(tmp)).toEqual([]);
    await expectReplayedFiles(out);
  });

  it('in place: journals replayed in the image; the files are those after replay', async () => {
    const disk = join(dir, 'inplace.raw');
    await copyImage(snapshot, disk);
    const r = await runCli(['--in-place', '--engine', 'mount', '--format', 'raw', disk]);
    expect(r.exitCode, r.stderr).toBe(0);
    await expectReplayedFiles(disk);
  });
});
