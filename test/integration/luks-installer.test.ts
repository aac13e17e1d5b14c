/**
 * Issue 14's "Done when" on the Debian/Ubuntu installer layout (scripts/make-luks --installer):
 * GPT with an ext4 /boot, a LUKS2 Argon2id volume holding LVM (ext4 root LV, swap LV) and a
 * LUKS1 PBKDF2 volume holding ext4, each with data written and deleted. sparsify runs as an
 * ordinary user (copy mode, in place on a qcow2, and copy mode with --keys-from-stdin); then every
 * output is opened with the keys in ONE appliance launch: every file is as it was, fsck is clean,
 * the swap UUID is kept, and the LUKS headers are byte for byte the input's.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chown, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { leftoversUnder, makeRunTmp } from '../helpers/cli.js';
import { buildLuksInstaller, checkInstallerImages, LUKS_INSTALLER, rangeHashes, type InstallerCheck } from '../helpers/luks-fixture.js';
import { ensureTestUser, runCliAsUser } from '../helpers/ordinary-user.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const { luks1Passphrase, luks2Passphrase } = LUKS_INSTALLER;

describeIntegration('LUKS: the installer layout, as an ordinary user', { tools: ['guestfish', 'qemu-img', 'qemu-storage-daemon', 'runuser', 'useradd'], root: true }, () => {
  let input: string;
  let truth: InstallerCheck;
  let inputSha: string;
  let dir: string;
  let env: Record<string, string>;
  const outputs: { name: string; path: string; reclaimedAtLeast: number }[] = [];
  /** The --keys-from-stdin copy: the same volumes reclaimed as in place, so the same bytes. */
  let stdinOutput = '';

  beforeAll(async () => {
    ({ imagePath: input, truth } = await buildLuksInstaller());
    inputSha = await sha256File(input);
    const user = ensureTestUser();
    dir = await makeRunTmp();
    await chown(dir, user.uid, user.gid);
    env = { PATH: process.env.PATH!, HOME: dir, TMPDIR: dir, LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
  }, 600_000);
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const deleted = (...names: string[]) => names.reduce((sum, n) => sum + truth.deletedMiB[n]! * MiB, 0);

  it('copy mode with --key /dev/sda2:key:…: the deleted data of /boot and of the root LV inside LUKS2 is gone; no key in any output; the key derivation timed as a report phase', async () => {
    const output = join(dir, 'copy.img');
    const json = join(dir, 'copy.json');
    const run = await runCliAsUser(['-v', '-x', '--json', json, '--key', `/dev/sda2:key:${luks2Passphrase}`, input, output], env, 300_000);
    expect(run.stderr).not.toMatch(/error/);
    expect(run.exitCode).toBe(0);
    // sda3 had no key: copied as is, and the warning says how to give one.
    expect(run.stderr).toMatch(/\/dev\/sda3: .*no --key was given for it/);
    const said = run.stdout + run.stderr + (await readFile(json, 'utf8'));
    expect(said).not.toContain(luks2Passphrase);
    expect(said).toMatch(/ciphertext/);
    // Deriving the Argon2id key is timed as a phase of its own in the report.
    const report = JSON.parse(await readFile(json, 'utf8')) as { phases: { name: string }[] };
    expect(report.phases.map((p) => p.name)).toContain('LUKS key derivation');
    const saved = (await allocatedBytes(input)) - (await allocatedBytes(output));
    expect(saved).toBeGreaterThanOrEqual(0.9 * deleted('root', 'boot'));
    outputs.push({ name: 'copy', path: output, reclaimedAtLeast: deleted('root', 'boot') });
    expect(await sha256File(input)).toBe(inputSha);
  }, 400_000);

  it('in place on a qcow2 with --key /dev/sda2:key:… and --key all:file:…: LUKS2 and LUKS1 ciphertext of free blocks is discarded; each key derivation a line of the plain task list', async () => {
    const image = join(dir, 'inplace.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', input, image]);
    const user = ensureTestUser();
    await chown(image, user.uid, user.gid);
    const keyFile = join(dir, 'luks1.key');
    await writeFile(keyFile, `${luks1Passphrase}\n`, { mode: 0o600 });
    await chown(keyFile, user.uid, user.gid);
    const before = await allocatedBytes(image);
    const run = await runCliAsUser(['--in-place', '--key', `/dev/sda2:key:${luks2Passphrase}`, '--key', `all:file:${keyFile}`, image], env, 300_000);
    expect(run.stderr).not.toMatch(/error|warning/);
    expect(run.exitCode).toBe(0);
    expect(run.stdout + run.stderr).not.toContain(luks1Passphrase);
    // Each key derivation is a task: its own line in the plain task list (not a log line: -q is not given, but the task list prints it).
    expect(run.stdout).toMatch(/^\S* ?\/dev\/sda2: deriving the LUKS2 key \(argon2id, \d+ MiB, \d+ passes\)$/m);
    expect(run.stdout).toMatch(/^\S* ?\/dev\/sda3: deriving the LUKS1 key \(PBKDF2-sha\d+, \d+ iterations\)$/m);
    const saved = before - (await allocatedBytes(image));
    expect(saved).toBeGreaterThanOrEqual(0.9 * deleted('root', 'luks1', 'boot'));
    outputs.push({ name: 'in place', path: image, reclaimedAtLeast: deleted('root', 'luks1', 'boot') });
  }, 400_000);

  it('--keys-from-stdin through the CLI, as the ordinary user: one line per encrypted volume, in disk order; LUKS1 (PBKDF2) reclaimed too; --machine-readable shows each derivation', async () => {
    const output = join(dir, 'stdin.img');
    const args = ['--machine-readable', '--keys-from-stdin', '--format', 'raw', input, output];
    const run = await runCliAsUser(args, env, 300_000, `${luks2Passphrase}\n${luks1Passphrase}\n`);
    expect(run.stderr).not.toMatch(/error|warning/);
    expect(run.exitCode).toBe(0);
    // The machine lines: each derivation a status line of its own, between examining and the pass.
    const lines = run.stdout.split('\n');
    const deriving = lines.filter((l) => l.includes('deriving'));
    expect(deriving).toHaveLength(2);
    expect(deriving[0]).toMatch(/^\/dev\/sda2: deriving the LUKS2 key \(argon2id, \d+ MiB, \d+ passes\)$/);
    expect(deriving[1]).toMatch(/^\/dev\/sda3: deriving the LUKS1 key \(PBKDF2-sha\d+, \d+ iterations\)$/);
    expect(lines.indexOf('Examine filesystems')).toBeLessThan(lines.indexOf(deriving[0]!));
    for (const key of [luks1Passphrase, luks2Passphrase]) expect(run.stdout + run.stderr).not.toContain(key);
    const saved = (await allocatedBytes(input)) - (await allocatedBytes(output));
    expect(saved).toBeGreaterThanOrEqual(0.9 * deleted('root', 'luks1', 'boot'));
    // Written by the ordinary user, not by root.
    expect((await stat(output)).uid).toBe(ensureTestUser().uid);
    stdinOutput = output;
    expect(await sha256File(input)).toBe(inputSha);
  }, 400_000);

  it('opened with the keys in the appliance, copy and in place hold every file as it was, fsck clean, swap kept, LUKS headers unchanged', async () => {
    expect(outputs.map((o) => o.name)).toEqual(['copy', 'in place']);
    const checks = await checkInstallerImages(outputs.map((o) => o.path));
    const wantHeaders = await rangeHashes(input, truth.headers);
    for (const [i, o] of outputs.entries()) {
      const check = checks[i]!;
      expect({ output: o.name, fsck: check.fsck }).toEqual({ output: o.name, fsck: { boot: 'clean', root: 'clean', luks1: 'clean' } });
      expect({ output: o.name, files: check.files }).toEqual({ output: o.name, files: truth.files });
      expect(check.swapUuid).toBe(truth.swapUuid);
      expect(check.headers).toEqual(truth.headers);
      let raw = o.path;
      if (o.path.endsWith('.qcow2')) {
        raw = `${o.path}.raw`;
        await execFileAsync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', o.path, raw]);
      }
      expect({ output: o.name, headers: await rangeHashes(raw, truth.headers) }).toEqual({ output: o.name, headers: wantHeaders });
    }
    expect(truth.files.root.split('\n')).toHaveLength(5);
    // --keys-from-stdin reclaimed what in place did (all three volumes): byte for byte the same disk.
    await execFileAsync('cmp', [stdinOutput, `${outputs[1]!.path}.raw`]);
    const ours = new Set([...outputs.map((o) => o.path), stdinOutput, join(dir, 'copy.json'), join(dir, 'luks1.key'), join(dir, 'inplace.qcow2.raw')]);
    expect((await leftoversUnder(dir)).filter((l) => !ours.has(l.replace(/^file: /, '')))).toEqual([]);
  }, 600_000);
});
