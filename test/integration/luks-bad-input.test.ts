/**
 * Bad LUKS input through the real CLI, on copies of the installer layout (scripts/make-luks
 * --installer) with one thing wrong: a wrong key is a one-line error naming the volume; no key,
 * a payload offset beyond the partition, an image whose file ends inside the LUKS header, a
 * corrupted LUKS2 header (both copies) and absurd Argon2 costs are each a
 * warning with the reason and the volume copied as it is. The input is never changed, nothing is
 * left behind, and no key appears in stdout, stderr, the JSON report or `-v -x` output.
 */
import { execFile } from 'node:child_process';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI, leftoversUnder, makeRunTmp } from '../helpers/cli.js';
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

  /**
   * Runs `sparsify -v -x --json R ARGS IN OUT` under /usr/bin/time: the run, its peak memory, and
   * whether the LUKS heads of OUT are IN's; checks that IN is unchanged, that no key was said and
   * that nothing is left behind.
   */
  async function sparsify(input: string, args: readonly string[], headRanges?: InstallerCheck['headers']) {
    const output = join(dir, 'out.img');
    const json = join(dir, 'report.json');
    const time = join(dir, 'time.txt');
    const before = await sha256File(input);
    const argv = ['-f', '%M', '-o', time, process.execPath, CLI, '-v', '-x', '--json', json, '--format', 'raw', ...args, input, output];
    const run = await execFileAsync('/usr/bin/time', argv, { env: { ...process.env, TMPDIR: dir }, maxBuffer: 64 << 20 }).then(
      (r) => ({ exitCode: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ exitCode: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
    const peakKib = Number((await readFile(time, 'utf8')).trim().split('\n').pop());
    const said = run.stdout + run.stderr + (await readFile(json, 'utf8').catch(() => ''));
    for (const key of KEYS) expect(said).not.toContain(key);
    expect(await sha256File(input)).toBe(before);
    const heads = headRanges ?? [{ offsetBytes: partition(2), sizeBytes: 8 << 20 }, { offsetBytes: partition(3), sizeBytes: 2 << 20 }];
    const outputHashes = run.exitCode === 0 ? await rangeHashes(output, heads) : [];
    const inputHashes = await rangeHashes(input, heads);
    for (const f of [output, json, time, input]) await rm(f, { force: true });
    expect(await leftoversUnder(dir)).toEqual([]);
    return { ...run, said, peakKib, sameHeads: outputHashes.length > 0 && outputHashes.every((h, i) => h === inputHashes[i]) };
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

  it('a LUKS1 header whose payload offset lies beyond its partition and a LUKS2 header with both copies corrupted: each a warning with its reason, copied as is', async () => {
    const input = await damaged('broken', async (f) => {
      const field = Buffer.alloc(4);
      field.writeUInt32BE(0x7fffffff);
      await f.write(field, 0, 4, partition(3) + 104); // LUKS1 payload-offset, in sectors: far beyond the partition
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
    const run = await sparsify(input, ['--key', `/dev/sda3:key:${luks1Passphrase}`, '--key', `/dev/sda2:key:${luks2Passphrase}`]);
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toMatch(/warning: \/dev\/sda3: .*LUKS1 header at byte 0: payload offset \d+ is beyond the \d+-byte volume/);
    expect(run.stderr).toMatch(/warning: \/dev\/sda2: .*neither header copy is valid \(primary: checksum mismatch; secondary: checksum mismatch\)/);
    expect(run.sameHeads).toBe(true);
  });

  /** A whole-disk LUKS image holding the first `cutBytes` of partition `n`: the file ends there. */
  async function cutInside(n: 2 | 3, cutBytes: number): Promise<string> {
    const path = join(dir, `cut${n}.img`);
    const bytes = Buffer.alloc(cutBytes);
    {
      await using from = await open(fixture, 'r');
      await from.read(bytes, 0, cutBytes, partition(n));
    }
    await writeFile(path, bytes);
    return path;
  }

  it('an image cut inside the LUKS header (LUKS2: in key slot 0 material; LUKS1: in key slot 0 material): one warning line, copied as is', async () => {
    // LUKS2: both 16 KiB header copies whole, key slot 0's 256,000 bytes of material from 32 KiB cut at 128 KiB.
    // LUKS1: the 592-byte header whole, key slot 0's material from 4 KiB cut at 64 KiB.
    for (const [n, cutBytes, version, why] of [
      [2, 128 << 10, 2, /header of \d+ bytes does not fit the 131072-byte volume/],
      [3, 64 << 10, 1, /payload offset \d+ is beyond the 65536-byte volume/],
    ] as const) {
      const input = await cutInside(n, cutBytes);
      const pass = n === 2 ? luks2Passphrase : luks1Passphrase;
      const run = await sparsify(input, ['--key', `/dev/sda:key:${pass}`], [{ offsetBytes: 0, sizeBytes: cutBytes }]);
      expect(run.exitCode).toBe(0);
      const warnings = run.stderr.split('\n').filter((l) => l.startsWith('sparsify: warning:'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(new RegExp(`^sparsify: warning: /dev/sda: .*LUKS${version} .*: copied as is$`));
      expect(warnings[0]).toMatch(why);
      // The whole output is the input, byte for byte.
      expect(run.sameHeads).toBe(true);
    }
  });

  it('Argon2 asking for 100 GiB of memory: refused before anything is allocated; a cipher Node cannot decrypt (LUKS1 serpent): refused before deriving; each a warning, copied as is', async () => {
    const input = await damaged('absurd', async (f) => {
      const bytes = Buffer.alloc(1 << 20);
      await f.read(bytes, 0, bytes.length, partition(2));
      const forged = forgePrimary(bytes, (j) => j.replace(/"memory":\d+/, `"memory":${100 * 1024 * 1024}`));
      await f.write(forged, 0, forged.length, partition(2));
      await f.write(Buffer.from('serpent\0'), 0, 8, partition(3) + 8); // LUKS1 cipher-name (no checksum in LUKS1)
    });
    const run = await sparsify(input, ['--key', `/dev/sda2:key:${luks2Passphrase}`, '--key', `/dev/sda3:key:${luks1Passphrase}`]);
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toMatch(/warning: \/dev\/sda2: .*argon2id asks for 102400 MiB of memory .*refused as absurd/);
    expect(run.stderr).toMatch(/warning: \/dev\/sda3: .*cipher serpent-\S+ with a \d+-bit key is not supported/);
    expect(run.stdout).not.toMatch(/\/dev\/sda3: deriving/);
    expect(run.peakKib).toBeLessThan(1024 * 1024);
    expect(run.sameHeads).toBe(true);
  });
  it('--key, --keys-from-stdin and --echo-keys are in --help; luks is a --machine-readable capability', async () => {
    const { stdout: help } = await execFileAsync(process.execPath, [CLI, '--help']);
    for (const flag of ['--key <selector>', '--keys-from-stdin', '--echo-keys']) expect(help).toContain(flag);
    const { stdout: caps } = await execFileAsync(process.execPath, [CLI, '--machine-readable']);
    expect(caps.split('\n')).toContain('luks');
  });
});
