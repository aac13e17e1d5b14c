/**
 * Bad LUKS input through the real CLI, on copies of the installer layout (scripts/make-luks
 * --installer) with one thing wrong: a wrong key is a one-line error naming the volume; no key,
 * a truncated volume, a corrupted LUKS2 header (both copies) and absurd Argon2 costs are each a
 * warning with the reason and the volume copied as it is. The input is never changed, nothing is
 * left behind, and no key appears in stdout, stderr, the JSON report or `-v -x` output.
 */
import { execFile } from 'node:child_process';
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI, leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { copyImage } from '../helpers/image.js';
import { buildLuksInstaller, forgePrimary, LUKS_INSTALLER, rangeHashes, type InstallerCheck } from '../helpers/luks-fixture.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const { luks1Passphrase, luks2Passphrase } = LUKS_INSTALLER;
const WRONG = 'not-the-key-7d1f';
const KEYS = [luks1Passphrase, luks2Passphrase, WRONG];

describeIntegration('LUKS: bad input through the CLI', { tools: ['guestfish', 'qemu-storage-daemon'] }, () => {
  let fixture: string;
  let truth: InstallerCheck;
  let dir: string;
  beforeAll(async () => {
    ({ imagePath: fixture, truth } = await buildLuksInstaller());
    dir = await makeRunTmp();
  }, 600_000);
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** The partition (2: LUKS2, 3: LUKS1) as a byte range of the disk. */
  const partition = (n: 2 | 3) => truth.headers[n - 2]!.offsetBytes;

  /** A copy of the fixture with `edit` applied to its bytes. */
  async function damaged(name: string, edit?: (file: Awaited<ReturnType<typeof open>>) => Promise<void>): Promise<string> {
    const path = join(dir, `${name}.img`);
    await copyImage(fixture, path);
    if (edit) {
      await using file = await open(path, 'r+');
      await edit(file);
    }
    return path;
  }

  /** Runs `sparsify -v -x --json R ARGS IN OUT`: the run, what it said (report included), and whether IN changed. */
  async function sparsify(input: string, args: readonly string[]) {
    const output = join(dir, 'out.img');
    const json = join(dir, 'report.json');
    const before = await sha256File(input);
    const run = await runCli(['-v', '-x', '--json', json, '--format', 'raw', ...args, input, output], { TMPDIR: dir });
    const said = run.stdout + run.stderr + (await readFile(json, 'utf8').catch(() => ''));
    for (const key of KEYS) expect(said).not.toContain(key);
    expect(await sha256File(input)).toBe(before);
    const outputHashes = run.exitCode === 0 ? await rangeHashes(output, [{ offsetBytes: partition(2), sizeBytes: 8 << 20 }, { offsetBytes: partition(3), sizeBytes: 2 << 20 }]) : [];
    const inputHashes = await rangeHashes(input, [{ offsetBytes: partition(2), sizeBytes: 8 << 20 }, { offsetBytes: partition(3), sizeBytes: 2 << 20 }]);
    await rm(output, { force: true });
    await rm(json, { force: true });
    await rm(input);
    expect(await leftoversUnder(dir)).toEqual([]);
    return { ...run, said, sameHeads: outputHashes.length > 0 && outputHashes.every((h, i) => h === inputHashes[i]) };
  }

  it('a wrong key: exit 1 and one line naming the volume; no output', async () => {
    const run = await sparsify(await damaged('wrong'), ['--key', `/dev/sda2:key:${WRONG}`, '--key', `/dev/sda3:key:${luks1Passphrase}`]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'))).toEqual(['sparsify: error: no key slot of /dev/sda2 opens with the given key']);
  });

  it('no key: each LUKS volume copied as is with a warning naming --key', async () => {
    const run = await sparsify(await damaged('nokey'), []);
    expect(run.exitCode).toBe(0);
    for (const v of ['/dev/sda2: .*LUKS2.* no --key was given for it', '/dev/sda3: .*LUKS1.* no --key was given for it']) expect(run.stderr).toMatch(new RegExp(`warning: ${v}`));
    expect(run.sameHeads).toBe(true);
  });

  it('a truncated LUKS1 volume (payload beyond its partition): a warning with the reason, copied as is', async () => {
    const input = await damaged('truncated', async (f) => {
      const field = Buffer.alloc(4);
      field.writeUInt32BE(0x7fffffff);
      await f.write(field, 0, 4, partition(3) + 104); // payload-offset, in sectors
    });
    const run = await sparsify(input, ['--key', `all:key:${luks1Passphrase}`, '--key', `/dev/sda2:key:${luks2Passphrase}`]);
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toMatch(/warning: \/dev\/sda3: .*LUKS1 header at byte 0: payload offset \d+ is beyond the \d+-byte volume/);
    expect(run.sameHeads).toBe(true);
  });

  it('a LUKS2 header whose two copies are both corrupted: a warning naming both checksums, copied as is', async () => {
    const input = await damaged('corrupted', async (f) => {
      const head = Buffer.alloc(16);
      await f.read(head, 0, 16, partition(2));
      const hdrSize = Number(head.readBigUInt64BE(8));
      for (const at of [partition(2) + 4096 + 10, partition(2) + hdrSize + 4096 + 10]) {
        const b = Buffer.alloc(1);
        await f.read(b, 0, 1, at);
        b[0]! ^= 1;
        await f.write(b, 0, 1, at);
      }
    });
    const run = await sparsify(input, ['--key', `/dev/sda2:key:${luks2Passphrase}`]);
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toMatch(/warning: \/dev\/sda2: .*neither header copy is valid \(primary: checksum mismatch; secondary: checksum mismatch\)/);
    expect(run.sameHeads).toBe(true);
  });

  it('Argon2 asking for 100 GiB of memory: refused before anything is allocated, with a warning, copied as is', async () => {
    const input = await damaged('absurd', async (f) => {
      const bytes = Buffer.alloc(1 << 20);
      await f.read(bytes, 0, bytes.length, partition(2));
      const forged = forgePrimary(bytes, (j) => j.replace(/"memory":\d+/, `"memory":${100 * 1024 * 1024}`));
      await f.write(forged, 0, forged.length, partition(2));
    });
    const time = join(dir, 'time.txt');
    const output = join(dir, 'absurd-out.img');
    const run = await execFileAsync('/usr/bin/time', ['-f', '%M', '-o', time, process.execPath, CLI, '--format', 'raw', '--key', `/dev/sda2:key:${luks2Passphrase}`, input, output], { env: { ...process.env, TMPDIR: dir } })
      .then((r) => ({ exitCode: 0, ...r }), (e: { code: number; stdout: string; stderr: string }) => ({ exitCode: e.code, stdout: e.stdout, stderr: e.stderr }));
    const peakKib = Number((await readFile(time, 'utf8')).trim().split('\n').pop());
    await rm(time);
    await rm(output, { force: true });
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toMatch(/warning: \/dev\/sda2: .*argon2id asks for 102400 MiB of memory .*refused as absurd/);
    expect(peakKib).toBeLessThan(1024 * 1024);
    // The same image, through the common checks: IN unchanged, no key said, nothing left.
    const again = await sparsify(input, ['--key', `/dev/sda2:key:${luks2Passphrase}`]);
    expect(again.sameHeads).toBe(true);
  });
});
