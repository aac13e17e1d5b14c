/**
 * The map engine needs no privileges: copy mode and in place as an ordinary user, with
 * --engine map, on the multi-filesystem image (ext4, xfs, ntfs, vfat, swap mapped; btrfs has no
 * map reader yet and is left as it is).
 */
import { chown, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp } from '../helpers/cli.js';
import { ensureTestUser, runCliAsUser } from '../helpers/ordinary-user.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File, verifyImage } from '../helpers/verify.js';

const MiB = 1024 * 1024;

describeIntegration('rootless: --engine map as an ordinary user', { tools: ['runuser', 'useradd', 'qemu-img', 'qemu-storage-daemon'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let uid: number;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs', 'ntfs', 'vfat', 'swap', 'btrfs'], size: '2G', fillMiB: 24, garbageMiB: 96, seed: 3 });
    uid = ensureTestUser().uid;
    dir = await makeRunTmp();
    await chown(dir, uid, uid);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function privateCopy(name: string): Promise<string> {
    const path = join(dir, name);
    await copyImage(image.imagePath, path);
    await chown(path, uid, uid);
    return path;
  }

  async function userTmp(name: string): Promise<string> {
    const tmp = join(dir, name);
    await mkdir(tmp);
    await chown(tmp, uid, uid);
    return tmp;
  }

  it('copy mode', async () => {
    const input = await privateCopy('in.raw');
    const sha = await sha256File(input);
    const out = join(dir, 'out.qcow2');
    const json = join(dir, 'copy.json');
    const tmp = await userTmp('tmp-copy');
    const r = await runCliAsUser(['--engine', 'map', '--format', 'raw', '--convert', 'qcow2', '--json', json, input, out], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = (await readReport(json)).volumes;
    expect(rows.map((v) => `${v.type}:${v.action}`)).toEqual(['ext4:map', 'xfs:map', 'ntfs:map', 'vfat:map', 'swap:map', 'btrfs:keep']);
    expect(await sha256File(input)).toBe(sha);
    expect(await leftoversUnder(tmp)).toEqual([]);
    expect((await verifyImage(out, 'qcow2', image.manifestPath)).problems).toEqual([]);
    expect(await allocatedBytes(out)).toBeLessThan((await allocatedBytes(input)) - 0.9 * 5 * 96 * MiB);
  });

  it('in place', async () => {
    const disk = await privateCopy('inplace.raw');
    const before = await allocatedBytes(disk);
    const tmp = await userTmp('tmp-inplace');
    const r = await runCliAsUser(['--in-place', '--engine', 'map', '--format', 'raw', disk], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(before - (await allocatedBytes(disk))).toBeGreaterThan(0.9 * 5 * 96 * MiB);
    expect(await leftoversUnder(tmp)).toEqual([]);
    expect((await verifyImage(disk, 'raw', image.manifestPath)).problems).toEqual([]);
  });
});
