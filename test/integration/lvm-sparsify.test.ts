/**
 * libguestfs' own virt-sparsify tests, adapted: a disk built by libguestfs with /boot on sda1
 * and the root ext4 on /dev/VG/LV (LVM), 300 MB written and deleted on the LV and 10 MB on
 * /boot. Copy mode and in place must reclaim it, and the LV's files must survive.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyImage, fixtureDir } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File } from '../helpers/verify.js';
import type { VolumeReport } from '../../src/index.js';

const execFileAsync = promisify(execFile);
const GUESTFS_ENV = { ...process.env, LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
const KEEP_BYTE = 0x5a;

/** The recipe, as in libguestfs' test-virt-sparsify-in-place.sh, plus a kept file on the LV. */
const RECIPE = [
  '-N', 'disk.img=bootrootlv:/dev/VG/LV:ext4:ext4:400M:32M:gpt',
  'mount', '/dev/VG/LV', '/', ':', 'mkdir', '/boot', ':', 'mount', '/dev/sda1', '/boot', ':',
  'fill', String(KEEP_BYTE), '20M', '/keep', ':',
  'fill', '1', '300M', '/big', ':', 'fill', '1', '10M', '/boot/big', ':', 'sync', ':',
  'rm', '/big', ':', 'rm', '/boot/big', ':', 'umount-all',
];

async function lvmDisk(): Promise<string> {
  const key = createHash('sha256').update(JSON.stringify(RECIPE)).digest('hex').slice(0, 12);
  const image = join(fixtureDir(), `lvm-sparsify-${key}.img`);
  if (await access(image).then(() => true, () => false)) return image;
  await mkdir(fixtureDir(), { recursive: true });
  const dir = await mkdtemp('/tmp/sparsify-lvmdisk-');
  try {
    await execFileAsync('guestfish', RECIPE, { cwd: dir, env: GUESTFS_ENV, maxBuffer: 16 << 20 });
    await execFileAsync('cp', ['--sparse=always', join(dir, 'disk.img'), `${image}.partial`]);
    await rename(`${image}.partial`, image);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return image;
}

/** fsck and the kept file of the LV's ext4, read through a read-only loop device at its offset. */
async function checkLv(rawImage: string, offsetBytes: number, sizeBytes: number): Promise<void> {
  const { stdout } = await execFileAsync('losetup', ['--find', '--show', '--read-only', '--offset', String(offsetBytes), '--sizelimit', String(sizeBytes), rawImage]);
  const loop = stdout.trim();
  const mnt = await mkdtemp('/tmp/sparsify-lvmmnt-');
  try {
    await execFileAsync('e2fsck', ['-fn', loop]);
    await execFileAsync('mount', ['-o', 'ro,noload', loop, mnt]);
    try {
      const keep = await readFile(join(mnt, 'keep'));
      expect(keep.length).toBe(20 * 1024 * 1024);
      expect(keep.every((b) => b === KEEP_BYTE)).toBe(true);
    } finally {
      await execFileAsync('umount', [mnt]);
    }
  } finally {
    await execFileAsync('losetup', ['-d', loop]);
    await rm(mnt, { recursive: true, force: true });
  }
}

describeIntegration('LVM disks built by libguestfs (its own sparsify tests, adapted)', { tools: ['guestfish', 'qemu-img', 'qemu-storage-daemon', 'losetup', 'e2fsck'], root: true }, () => {
  let image: string;
  let dir: string;
  beforeAll(async () => {
    image = await lvmDisk();
    dir = await makeRunTmp();
  }, 600_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function run(args: string[]): Promise<readonly VolumeReport[]> {
    const tmp = join(dir, `tmp-${args.length}-${Date.now()}`);
    await mkdir(tmp);
    const json = join(dir, `r-${Date.now()}.json`);
    const r = await runCli(['--json', json, '--format', 'raw', ...args], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await leftoversUnder(tmp)).toEqual([]);
    return (await readReport(json)).volumes;
  }

  it('in place: the image shrinks by more than 300 MB; the LV is fsck clean with its file intact', async () => {
    const disk = join(dir, 'inplace.img');
    await copyImage(image, disk);
    const before = await allocatedBytes(disk);
    expect(before).toBeGreaterThan(310 * 1000 * 1024);
    const rows = await run(['--in-place', disk]);
    const lv = rows.find((r) => r.name === '/dev/VG/LV')!;
    expect(lv).toMatchObject({ type: 'ext4' });
    expect(lv.reclaimedBytes).toBeGreaterThan(290 * 1024 * 1024);
    expect(rows.find((r) => r.name === '/dev/sda2')).toMatchObject({ type: 'lvm-pv' });
    expect(before - (await allocatedBytes(disk))).toBeGreaterThan(300 * 1000 * 1024);
    await checkLv(disk, lv.offsetBytes, lv.sizeBytes);
  });

  it('copy mode: the output holds the LV without the deleted data; input unchanged', async () => {
    const sha = await sha256File(image);
    const out = join(dir, 'out.raw');
    const rows = await run([image, out]);
    const lv = rows.find((r) => r.name === '/dev/VG/LV')!;
    expect(lv.reclaimedBytes).toBeGreaterThan(290 * 1024 * 1024);
    expect(await allocatedBytes(out)).toBeLessThan((await allocatedBytes(image)) - 300 * 1000 * 1024);
    expect(await sha256File(image)).toBe(sha);
    await checkLv(out, lv.offsetBytes, lv.sizeBytes);
  });

  it('--ignore VG leaves the logical volumes alone', async () => {
    const out = join(dir, 'ignored.raw');
    const rows = await run(['--ignore', 'VG', image, out]);
    expect(rows.find((r) => r.name === '/dev/VG/LV')).toMatchObject({ handled: 'copied as is', reclaimedBytes: 0 });
    expect(rows.find((r) => r.name === '/dev/sda2')).toMatchObject({ handled: 'copied as is' });
  });
});
