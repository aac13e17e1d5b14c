/**
 * A swap area made with 64 KiB pages (mkswap -p 65536, as on arm64 or ppc64le guests) keeps its
 * whole first page, whose last 10 bytes are the signature: blkid still finds the same UUID and
 * label after copy mode and in place, with either engine; the stale pages after it read as zero.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';
import { readBytes } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const PAGE_BYTES = 65536;
const DISK_BYTES = 64 * MiB;
/** Partition 1 at LBA 2048, 62 MiB long. */
const PART_OFFSET_BYTES = MiB;
const PART_BYTES = DISK_BYTES - 2 * MiB;
const LABEL = 'pages64k';
const UUID = '3f1e2d4c-5b6a-4789-8abc-def012345678';

/** blkid's view of the swap partition of a raw image (low-level probe at the partition's offset). */
async function blkidSwap(image: string): Promise<Record<string, string>> {
  const { stdout } = await execFileAsync('blkid', ['-p', '-o', 'export', '-O', String(PART_OFFSET_BYTES), '-S', String(PART_BYTES), image]).catch(
    (err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }),
  );
  return Object.fromEntries(stdout.trim().split('\n').filter(Boolean).map((l) => l.split('=', 2) as [string, string]));
}

/** A GPT disk whose one partition is 64 KiB-page swap, every page after the header full of data. */
async function buildDisk(dir: string): Promise<string> {
  const disk = join(dir, 'disk.img');
  const swap = join(dir, 'swap.img');
  await execFileAsync('truncate', ['-s', String(DISK_BYTES), disk]);
  await execFileAsync('sgdisk', ['-n', `1:2048:+${PART_BYTES / MiB}M`, '-t', '1:8200', disk]);
  await execFileAsync('truncate', ['-s', String(PART_BYTES), swap]);
  await execFileAsync('mkswap', ['-p', String(PAGE_BYTES), '-L', LABEL, '-U', UUID, swap]);
  // Swapped-out pages: data the passes must clear (the header page is left as mkswap wrote it).
  await execFileAsync('sh', ['-c', `openssl enc -aes-128-ctr -pass pass:swap -nosalt </dev/zero 2>/dev/null | head -c ${PART_BYTES - PAGE_BYTES} | dd of="$1" bs=64K seek=1 conv=notrunc status=none`, 'sh', swap]);
  await execFileAsync('dd', [`if=${swap}`, `of=${disk}`, `bs=${MiB}`, `seek=${PART_OFFSET_BYTES / MiB}`, 'conv=notrunc,sparse', 'status=none']);
  await rm(swap);
  return disk;
}

describeIntegration('swap made with 64 KiB pages', { tools: ['mkswap', 'blkid', 'sgdisk', 'openssl', 'qemu-img', 'qemu-storage-daemon', 'losetup'], root: true }, () => {
  let dir: string;
  let disk: string;
  let header: Buffer;

  beforeAll(async () => {
    dir = await makeRunTmp();
    disk = await buildDisk(dir);
    header = await readBytes(disk, PART_OFFSET_BYTES, PAGE_BYTES);
    expect(await blkidSwap(disk)).toMatchObject({ TYPE: 'swap', UUID, LABEL });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function expectSwapKept(image: string): Promise<void> {
    expect(await blkidSwap(image)).toMatchObject({ TYPE: 'swap', UUID, LABEL });
    expect((await readBytes(image, PART_OFFSET_BYTES, PAGE_BYTES)).equals(header)).toBe(true);
    const rest = await readBytes(image, PART_OFFSET_BYTES + PAGE_BYTES, PART_BYTES - PAGE_BYTES);
    expect(rest.every((b) => b === 0)).toBe(true);
  }

  for (const engine of ['auto', 'mount']) {
    it(`copy mode, --engine ${engine}: the whole 64 KiB header survives, the rest is cleared`, async () => {
      const work = await makeRunTmp();
      const out = join(dir, `out-${engine}.img`);
      const r = await runCli(['-q', '--engine', engine, '--format', 'raw', '--convert', 'raw', disk, out], { TMPDIR: work });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(await leftoversUnder(work)).toEqual([]);
      await rm(work, { recursive: true, force: true });
      await expectSwapKept(out);
      await rm(out);
    });

    it(`in place, --engine ${engine}: the whole 64 KiB header survives, the rest is discarded`, async () => {
      const copy = join(dir, `inplace-${engine}.img`);
      await copyImage(disk, copy);
      const r = await runCli(['-q', '--in-place', '--engine', engine, '--format', 'raw', copy]);
      expect(r.exitCode, r.stderr).toBe(0);
      await expectSwapKept(copy);
      await rm(copy);
    });
  }
});
