/**
 * The appliance engine as an ordinary user (issue 10's "Done when"): libguestfs' own
 * virt-sparsify test scripts pass unchanged with `virt-sparsify` running sparsify, and a
 * crash-consistent snapshot sparsified with the default engine loses nothing while its dirty
 * volumes' deleted data is reclaimed. Everything but sparsify (and the scripts) runs as root:
 * building the images, mounting them to check them.
 */
import { execFileSync } from 'node:child_process';
import { chown, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leftoversUnder, makeRunTmp, orphanLoops } from '../helpers/cli.js';
import { makeCrashSnapshot, readDirtyVolumes, type CrashSnapshot } from '../helpers/crash-snapshot.js';
import { itRunsEachScript } from '../helpers/guestfs-tools-source.js';
import { buildImage } from '../helpers/image.js';
import { ensureTestUser, runAsUser, runCliAsUser } from '../helpers/ordinary-user.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File } from '../helpers/verify.js';

const MiB = 1024 * 1024;
/** A script builds a 400 MB disk with guestfish and sparsify may launch an appliance: both under TCG. */
const SCRIPT_TIMEOUT_MS = 600_000;
/** One appliance launch is 15–60 s here under load; the whole run a few minutes at worst. */
const RUN_TIMEOUT_MS = 480_000;

describeIntegration('appliance engine as an ordinary user', { tools: ['runuser', 'useradd', 'guestfish', 'qemu-img', 'qemu-storage-daemon', 'losetup', 'e2fsck', 'xfs_repair', 'du'], root: true }, () => {
  let user: { uid: number; gid: number };
  let dir: string;

  /** A directory under `dir` the user owns. */
  async function userDir(name: string): Promise<string> {
    const path = join(dir, name);
    await mkdir(path);
    await chown(path, user.uid, user.gid);
    return path;
  }

  beforeAll(async () => {
    user = ensureTestUser();
    dir = await makeRunTmp();
    await chown(dir, user.uid, user.gid);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe("libguestfs' own virt-sparsify test scripts, unchanged", () => {
    itRunsEachScript(' as an ordinary user', SCRIPT_TIMEOUT_MS + 60_000, async (run, script, call) => {
      const home = join(run.dir, 'home');
      const tmp = join(run.dir, 'tmp');
      await mkdir(home);
      await mkdir(tmp);
      execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, run.dir]);
      const env = {
        PATH: run.env.PATH!,
        VG: '',
        TEST_FUNCTIONS: run.env.TEST_FUNCTIONS!,
        HOME: home,
        TMPDIR: tmp,
        LANG: 'C',
        LIBGUESTFS_BACKEND: run.env.LIBGUESTFS_BACKEND!,
        LIBGUESTFS_BACKEND_SETTINGS: run.env.LIBGUESTFS_BACKEND_SETTINGS!,
        // The scripts' guestfish keeps its appliance in libguestfs' usual cache, not per run.
        LIBGUESTFS_CACHEDIR: '/var/tmp',
      };
      const othersLoops = await orphanLoops();
      const r = await runAsUser(['bash', script], env, { cwd: join(run.dir, 'top', 'sparsify'), timeoutMs: SCRIPT_TIMEOUT_MS });
      const output = `${r.stdout}\n${r.stderr}`;
      expect(r.exitCode, output.slice(-4000)).toBe(0);
      expect(output).toMatch(/test virt-sparsify: \d+ K -> \d+ K/);
      expect((await readFile(run.callLog, 'utf8')).trim()).toBe(call);
      expect(await leftoversUnder(tmp, othersLoops)).toEqual([]);
    });
  });

  describe('a crash-consistent snapshot, default engine', () => {
    let crash: CrashSnapshot;
    let mnt: string;
    let inputSha: string;
    const garbageMiB = 64;

    beforeAll(async () => {
      const base = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs'], size: '1G', fillMiB: 16, garbageMiB, seed: 17 });
      mnt = join(dir, 'mnt');
      await mkdir(mnt);
      crash = await makeCrashSnapshot(base.imagePath, base.manifest, dir, join(dir, 'snapshot.raw'));
      await chown(crash.path, user.uid, user.gid);
      inputSha = await sha256File(crash.path);
    }, 600_000);

    /** Copies the snapshot as the user; returns the output's path and the report. */
    async function sparsifyAsUser(name: string, extra: string[]) {
      const tmp = await userDir(`tmp-${name}`);
      const home = await userDir(`home-${name}`);
      const out = join(dir, `${name}.raw`);
      const json = join(dir, `${name}.json`);
      const othersLoops = await orphanLoops();
      const r = await runCliAsUser([...extra, '--format', 'raw', '--json', json, crash.path, out], { TMPDIR: tmp, HOME: home }, RUN_TIMEOUT_MS);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(await leftoversUnder(tmp, othersLoops)).toEqual([]);
      expect(await sha256File(crash.path)).toBe(inputSha);
      return { out, report: await readReport(json) };
    }

    it('loses nothing and reclaims the dirty volumes\' deleted data', async () => {
      const { out, report } = await sparsifyAsUser('out', []);
      const dirtyRows = report.volumes.filter((v) => crash.dirty.some((d) => d.name === v.name));
      expect(dirtyRows.map((v) => v.name)).toEqual(crash.dirty.map((d) => d.name));
      for (const row of dirtyRows) {
        expect(row.action, `${row.name}: ${row.handled} (${row.reason})`).toBe('appliance');
        expect(row.handled).not.toBe('copied as is');
      }
      expect(await readDirtyVolumes(out, crash, mnt)).toEqual(crash.truth);

      // The same snapshot copied with no filesystem pass keeps every deleted byte.
      const { out: asIs } = await sparsifyAsUser('nozero', ['--no-zero']);
      const reclaimed = (await allocatedBytes(asIs)) - (await allocatedBytes(out));
      expect(reclaimed, `reclaimed ${(reclaimed / MiB).toFixed(1)} MiB`).toBeGreaterThan(0.9 * crash.dirty.length * garbageMiB * MiB);
    }, 2 * RUN_TIMEOUT_MS + 120_000);
  });
});
