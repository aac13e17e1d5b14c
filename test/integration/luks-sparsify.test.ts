/**
 * sparsify with --key on the LUKS fixture disk (four LUKS volumes holding ext4, one holding
 * LVM with an ext4 LV; every free block holds ciphertext of old random data): the ciphertext of
 * the free blocks is dropped, every other byte is copied as it was, and no key reaches the
 * output. A wrong key is a one-line error; a volume with no key is copied as is with a warning.
 */
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isAllZero } from '../../src/binary/bytes.js';
import { sliceReader } from '../../src/disk/types.js';
import { readEncryptedFreeSpace } from '../../src/fs/luks/inner-free.js';
import { openLuksVolume } from '../../src/fs/luks/open.js';
import { openKeyStore } from '../../src/keys/key-store.js';
import { parseKeySelector } from '../../src/keys/selector.js';
import { readLayout } from '../../src/layout/read-layout.js';
import { humanBytes } from '../../src/util/size.js';
import { makeRunTmp, runCli } from '../helpers/cli.js';
import { copyImage } from '../helpers/image.js';
import { openFileReader } from '../helpers/file-reader.js';
import { buildLuksFixture, LUKS_LVM_VOLUME, LUKS_VOLUMES } from '../helpers/luks-fixture.js';
import { describeIntegration } from '../helpers/require.js';

const ALL = [...LUKS_VOLUMES, LUKS_LVM_VOLUME];

describeIntegration('sparsify --key on LUKS1 and LUKS2 volumes', { tools: ['guestfish', 'qemu-storage-daemon'] }, () => {
  let input: string;
  let tmp: string;
  let keyFile: string;
  beforeAll(async () => {
    input = (await buildLuksFixture()).imagePath;
    tmp = await makeRunTmp();
    keyFile = join(tmp, 'lvm.key');
    await writeFile(keyFile, `${LUKS_LVM_VOLUME.passphrase}\nignored second line\n`);
  }, 600_000);
  afterAll(() => rm(tmp, { recursive: true, force: true }));

  const keyArgs = () => [
    ...LUKS_VOLUMES.flatMap((v) => ['--key', `/dev/sda${v.partition}:key:${v.passphrase}`]),
    '--key', `/dev/sda5:file:${keyFile}`,
  ];

  it('copy mode drops exactly the ciphertext of free blocks; every other byte, headers included, is as it was; the report says per volume how much, and that it reads as noise', async () => {
    const output = join(tmp, 'out.img');
    const json = join(tmp, 'report.json');
    const before = await readFile(input);
    const run = await runCli(['-v', '-x', '--json', json, ...keyArgs(), input, output], { TMPDIR: tmp });
    expect(run.stderr).not.toMatch(/error/);
    expect(run.exitCode).toBe(0);
    // The keys appear nowhere: not in -v -x output, not in the report.
    const said = run.stdout + run.stderr + (await readFile(json, 'utf8'));
    for (const v of ALL) expect(said).not.toContain(v.passphrase);
    // Per volume, the report says how much ciphertext was dropped and that the guest reads noise there.
    const report = JSON.parse(await readFile(json, 'utf8')) as { volumes: { name: string; type: string; handled: string; reclaimedBytes: number }[] };
    const luks = report.volumes.filter((v) => v.type === 'luks');
    expect(luks.map((v) => v.name)).toEqual(ALL.map((v) => `/dev/sda${v.partition}`));
    for (const v of luks) {
      expect(v.reclaimedBytes).toBeGreaterThan(0);
      expect(v.handled).toBe(`${humanBytes(v.reclaimedBytes)} ciphertext skipped; free blocks read as noise`);
    }

    await expectOnlyFreeCiphertextDropped(before, output, (await stat(input)).blocks * 512);
  });

  it('in place gives the ciphertext of free blocks back to the host, and changes nothing else', async () => {
    const image = join(tmp, 'inplace.img');
    await copyImage(input, image);
    const before = await readFile(image);
    const allocatedBefore = (await stat(image)).blocks * 512;
    const run = await runCli(['--in-place', ...keyArgs(), image], { TMPDIR: tmp });
    expect(run.exitCode).toBe(0);
    await expectOnlyFreeCiphertextDropped(before, image, allocatedBefore);
  });

  /** `after` equals `before` but for the ciphertext of every free block, which reads as zero and is no longer allocated. */
  async function expectOnlyFreeCiphertextDropped(before: Buffer, afterPath: string, allocatedBefore: number): Promise<void> {
    await using disk = await openFileReader(input);
    const layout = await readLayout(disk);
    const after = await readFile(afterPath);
    let dropped = 0;
    let cursor = 0;
    const store = openKeyStore({ selectors: keyArgs().filter((a) => a !== '--key').map(parseKeySelector), fromStdin: false });
    for (const v of ALL) {
      const part = layout.volumes.find((p) => p.partitionNumber === v.partition)!;
      const opened = await openLuksVolume(sliceReader(disk, part.offsetBytes, part.sizeBytes), part.name, store);
      if (!opened.opened) throw new Error(opened.reason);
      const free = (await readEncryptedFreeSpace(opened.view, part.name)).cipherFree.shift(part.offsetBytes);
      for (const r of free.ranges) {
        expect(Buffer.compare(after.subarray(cursor, r.start), before.subarray(cursor, r.start))).toBe(0);
        expect(isAllZero(after.subarray(r.start, r.end))).toBe(true);
        cursor = r.end;
      }
      dropped += free.totalBytes;
    }
    expect(Buffer.compare(after.subarray(cursor), before.subarray(cursor))).toBe(0);
    // The fixture's free blocks held random ciphertext: nearly all of it is gone.
    const saved = allocatedBefore - (await stat(afterPath)).blocks * 512;
    expect(dropped).toBeGreaterThan(100 << 20);
    expect(saved).toBeGreaterThan(0.9 * dropped);
  }

  it('a wrong key is one line naming the volume; no output is left', async () => {
    const output = join(tmp, 'wrong.img');
    const args = keyArgs().map((a) => (a === '/dev/sda2:key:luks2-argon2id' ? '/dev/sda2:key:nope' : a));
    const run = await runCli([...args, input, output], { TMPDIR: tmp });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('sparsify: error: no key slot of /dev/sda2 opens with the given key');
    await expect(stat(output)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a volume with no key is copied as is, with a warning naming --key', async () => {
    const output = join(tmp, 'nokey.img');
    const run = await runCli(['--key', '/dev/sda1:key:luks1-pass-phrase', input, output], { TMPDIR: tmp });
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toMatch(/\/dev\/sda2: .*encrypted \(LUKS2\) and no --key was given for it.*copied as is/);
  });
});
