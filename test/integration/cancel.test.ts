import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, spawnCli, waitForExit, waitForOutput } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

describeIntegration('Ctrl-C: nothing left behind, input intact', { tools: ['qemu-img', 'qemu-storage-daemon', 'losetup', 'fstrim'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let inputSha: string;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs', 'swap'], size: '1G', fillMiB: 64, garbageMiB: 64, seed: 9 });
    inputSha = await sha256File(image.imagePath);
    dir = await makeRunTmp();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function interruptWhen(name: string, seen: (out: string) => boolean, extra: string[] = [], delayMs = 0) {
    const work = join(dir, `work-${name}`);
    await mkdir(work);
    const out = join(dir, `out-${name}.qcow2`);
    const child = spawnCli(['--machine-readable', '--tmp', work, ...extra, image.imagePath, out]);
    const exited = waitForExit(child);
    await waitForOutput(child, seen);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    child.kill('SIGINT');
    const r = await exited;
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/quit \(\^C\) at user request/);
    expect(await leftoversUnder(work)).toEqual([]);
    expect((await readdir(dir)).filter((n) => n.includes(`out-${name}`))).toEqual([]);
    expect(await sha256File(image.imagePath)).toBe(inputSha);
  }

  // Several moments inside the pass: while losetup attaches, while mount runs, during fstrim.
  it.each([0, 30, 120, 400])('during the filesystem pass (+%i ms)', async (delayMs) => {
    await interruptWhen(`fs${delayMs}`, (out) => /Trim free space in \/dev\/sda\d/.test(out), ['--engine', 'mount'], delayMs);
  });

  it('during the copy', async () => {
    await interruptWhen('copy', (out) => /^[1-9]\d*\/\d+$/m.test(out), ['--compress', '--convert', 'qcow2']);
  });
});
