/**
 * The preflight asks for the programs of the engines the planner chose: as root, --engine map
 * runs without ntfs-3g and nbdfuse (the mount engine's), and a run that needs the mount engine
 * without them stops before anything is written, naming them.
 */
import { readdir, rm, symlink, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const HIDDEN = ['nbdfuse', 'ntfs-3g'];

describeIntegration('preflight from the chosen engines', { tools: ['qemu-img', 'qemu-storage-daemon', 'nbdfuse', 'ntfs-3g'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let bin: string;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4', 'btrfs'], size: '1G', fillMiB: 8, garbageMiB: 16, seed: 11 });
    dir = await makeRunTmp();
    // A PATH with every program of /usr/bin but the mount engine's FUSE and NTFS ones
    // (the preflight also looks in /usr/sbin and /sbin, where neither is).
    bin = join(dir, 'bin');
    await mkdir(bin);
    for (const name of await readdir('/usr/bin')) {
      if (!HIDDEN.includes(name)) await symlink(join('/usr/bin', name), join(bin, name));
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('--engine map as root needs neither ntfs-3g nor nbdfuse', async () => {
    const out = join(dir, 'map.qcow2');
    const json = join(dir, 'map.json');
    const tmp = join(dir, 'tmp-map');
    await mkdir(tmp);
    const r = await runCli(['--engine', 'map', '--format', 'raw', '--convert', 'qcow2', '--json', json, image.imagePath, out], { PATH: bin, TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = (await readReport(json)).volumes;
    expect(rows.map((v) => `${v.type}:${v.action}`)).toEqual(['ext4:map', 'btrfs:keep']);
    expect(await leftoversUnder(tmp)).toEqual([]);
  });

  it('a volume planned for the mount engine makes the preflight name its missing programs; nothing is written', async () => {
    const sha = await sha256File(image.imagePath);
    const out = join(dir, 'auto.qcow2');
    const tmp = join(dir, 'tmp-auto');
    await mkdir(tmp);
    const r = await runCli(['--engine', 'mount', '--format', 'raw', '--convert', 'qcow2', image.imagePath, out], { PATH: bin, TMPDIR: tmp });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/^sparsify: error: ntfs-3g, nbdfuse not installed$/m);
    expect(await readdir(dir)).not.toContain('auto.qcow2');
    expect(await leftoversUnder(tmp)).toEqual([]);
    expect(await sha256File(image.imagePath)).toBe(sha);
  });
});
