import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli, spawnCli, waitForExit, waitForOutput } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);

/** Polls `probe` every few milliseconds until it returns true. */
async function waitUntil(what: string, probe: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Processes whose command line names `dir` (the daemons of a run whose --tmp is `dir`). */
async function processesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dir)) found.push(`${pid}: ${cmdline.replace(/\0/g, ' ').slice(0, 200)}`);
  }
  return found;
}

/** Mount points under `dir` (the 5th field of mountinfo), in mount order. */
async function mountsUnder(dir: string): Promise<string[]> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n');
  return lines.map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${dir}/`));
}

/** If a test failed half-way: release what a killed run left under `dir`, so it can be removed. */
async function releaseUnder(dir: string): Promise<void> {
  const run = (file: string, args: string[]) => execFileAsync(file, args).catch(() => undefined);
  for (const m of await mountsUnder(dir)) if (m.includes('/mnt-')) await run('umount', ['-l', m]);
  const { stdout } = await execFileAsync('losetup', ['-J']).catch(() => ({ stdout: '{}' }));
  const loops = (JSON.parse(stdout || '{}') as { loopdevices?: { name: string; 'back-file'?: string }[] }).loopdevices ?? [];
  for (const l of loops) if (l['back-file']?.startsWith(`${dir}/`)) await run('losetup', ['-d', l.name]);
  for (const m of (await mountsUnder(dir)).reverse()) await run('umount', ['-l', m]);
  for (const p of await processesUnder(dir)) process.kill(Number(p.split(':')[0]), 'SIGKILL');
}

describeIntegration(
  'SIGKILL: the children die with sparsify, the next run removes the rest',
  { tools: ['qemu-img', 'qemu-storage-daemon', 'setpriv', 'losetup', 'nbdfuse', 'fstrim'], root: true },
  () => {
    let image: BuiltImage;
    let inputSha: string;
    let dir: string;

    beforeAll(async () => {
      image = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs', 'swap'], size: '1G', fillMiB: 64, garbageMiB: 64, seed: 9 });
      inputSha = await sha256File(image.imagePath);
      dir = await makeRunTmp();
    });
    afterAll(async () => {
      await releaseUnder(dir);
      await rm(dir, { recursive: true, force: true });
    });

    /** Runs sparsify with `extra`, SIGKILLs it once `ready` holds, and checks what it left. */
    async function killWhen(name: string, extra: string[], ready: (work: string, child: ReturnType<typeof spawnCli>) => Promise<void>) {
      const work = join(dir, `work-${name}`);
      await mkdir(work);
      const out = join(dir, `out-${name}.qcow2`);
      const args = ['--machine-readable', '--tmp', work, ...extra, image.imagePath, out];
      const child = spawnCli(args, { TMPDIR: work });
      const exited = waitForExit(child);
      await ready(work, child);
      child.kill('SIGKILL');
      expect((await exited).exitCode).not.toBe(0);
      // The kernel sends each child its parent-death signal: no daemon of the run may stay.
      await waitUntil('the daemons of the killed run to exit', async () => (await processesUnder(work)).length === 0, 5000).catch(() => undefined);
      expect(await processesUnder(work)).toEqual([]);
      return { work, out, args, pid: child.pid! };
    }

    /** The next run (the same command) removes the debris with a notice, and then nothing of either run is left. */
    async function expectNextRunCleansUp(killed: { work: string; out: string; args: string[]; pid: number }, partial: boolean) {
      const r = await runCli(killed.args, { TMPDIR: killed.work });
      expect(r.exitCode, r.stderr).toBe(0);
      const notice = (what: string) => new RegExp(`^sparsify: warning: removed ${what}, (a partial output )?left by sparsify run ${killed.pid} when it was killed`, 'm');
      expect(r.stderr).toMatch(notice(`${killed.work}/sparsify-\\S+`));
      if (partial) expect(r.stderr).toMatch(notice(`${dir}/\\.out-\\S+\\.partial`));
      expect(await leftoversUnder(killed.work)).toEqual([]);
      expect((await readdir(dir)).filter((n) => n.includes('.partial'))).toEqual([]);
      await rm(killed.out);
      expect(await sha256File(image.imagePath)).toBe(inputSha);
    }

    it('during the mount pass (--engine mount): no daemon stays; the next run unmounts, detaches and removes', async () => {
      const mounted = async (work: string) => (await mountsUnder(work)).some((m) => m.includes('/mnt-'));
      const killed = await killWhen('mount', ['--engine', 'mount'], (work) => waitUntil('a filesystem of the mount engine', () => mounted(work), 120_000));
      const left = await leftoversUnder(killed.work);
      expect(left.some((l) => l.startsWith('mount:'))).toBe(true);
      expect(left.some((l) => l.startsWith('loop:'))).toBe(true);
      await expectNextRunCleansUp(killed, false);
    });

    it('as soon as the overlay is a FUSE file: the next run unmounts the dead FUSE file', async () => {
      const fuse = async (work: string) => (await mountsUnder(work)).some((m) => m.endsWith('.img'));
      const killed = await killWhen('fuse', ['--engine', 'mount'], (work) => waitUntil('the FUSE file', () => fuse(work), 120_000));
      expect((await leftoversUnder(killed.work)).some((l) => l.startsWith('mount:'))).toBe(true);
      await expectNextRunCleansUp(killed, false);
    });

    it('during the copy: the next run removes the partial output and the work directory', async () => {
      const killed = await killWhen('copy', ['--compress', '--convert', 'qcow2'], (_, child) => waitForOutput(child, (out) => /^[1-9]\d*\/\d+$/m.test(out)));
      expect((await readdir(dir)).filter((n) => n.endsWith(`.sparsify-${killed.pid}.partial`))).toHaveLength(1);
      await expectNextRunCleansUp(killed, true);
    });
  },
);
