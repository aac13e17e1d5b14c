/**
 * readLvm against disks that libguestfs built with real LVM2 inside its appliance. The truth is
 * what LVM itself reports in the same appliance session (`lvm lvs --segments`, `lvm pvs
 * --segments`), recorded next to the cached image.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openFileReader } from '../helpers/file-reader.js';
import { sliceReader, type BlockReader } from '../../src/disk/types.js';
import { readLayout } from '../../src/layout/read-layout.js';
import { readLvm } from '../../src/layout/lvm.js';
import { MDA_HEADER_BYTES, parseMdaHeader } from '../../src/layout/lvm-mda.js';
import { probeLvmPv } from '../../src/layout/lvm-pv.js';
import { fixtureDir } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';

const execFileAsync = promisify(execFile);
const GUESTFS_ENV = { ...process.env, LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
const PV_NAME = '/dev/sda2';

/** Asks LVM in the appliance for every LV segment and PV segment, in bytes and extents. */
const TRUTH_COMMANDS = [
  'debug', 'sh',
  'lvm lvs --segments --noheadings --units b --nosuffix --separator , -o lv_name,lv_size,seg_start_pe,seg_size_pe,devices VG; ' +
    'echo ---; ' +
    'lvm pvs --segments --noheadings --units b --nosuffix --separator , -o pv_name,pe_start,pv_pe_count,vg_extent_size,pvseg_start,pvseg_size,lv_name',
];
/** The disk of the issue: /boot on sda1, the root ext4 on /dev/VG/LV filling the PV sda2. */
const BOOTROOTLV = ['-N', 'disk.img=bootrootlv:/dev/VG/LV:ext4:ext4:400M:32M:gpt'];
/** The same disk with the LV shrunk to 200 MiB, then LV2 and LV3 created and LV2 removed: a hole. */
const HOLE_EDITS = [
  'run', ':', 'e2fsck-f', '/dev/VG/LV', ':', 'resize2fs-size', '/dev/VG/LV', '200M', ':',
  'lvresize', '/dev/VG/LV', '200', ':', 'lvcreate', 'LV2', 'VG', '8', ':', 'lvcreate', 'LV3', 'VG', '8', ':',
  'lvremove', '/dev/VG/LV2', ':',
];

interface LvmTruth {
  lvSegments: { lv: string; sizeBytes: number; sizeExtents: number; device: string; firstPe: number }[];
  pvSegments: { peStartBytes: number; peCount: number; extentBytes: number; firstPe: number; extents: number; lv: string }[];
}

function parseTruth(text: string): LvmTruth {
  const [lvPart = '', pvPart = ''] = text.split('---');
  const rows = (part: string) => part.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => l.split(','));
  return {
    lvSegments: rows(lvPart).map(([lv, size, , sizePe, devices]) => {
      const m = /^(.*)\((\d+)\)$/.exec(devices ?? '');
      return { lv: lv!, sizeBytes: Number(size), sizeExtents: Number(sizePe), device: m?.[1] ?? '', firstPe: Number(m?.[2]) };
    }),
    pvSegments: rows(pvPart).map(([, peStart, peCount, extent, start, size, lv]) => ({
      peStartBytes: Number(peStart), peCount: Number(peCount), extentBytes: Number(extent),
      firstPe: Number(start), extents: Number(size), lv: lv ?? '',
    })),
  };
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

async function guestfish(cwd: string, args: readonly string[]): Promise<string> {
  const { stdout } = await execFileAsync('guestfish', [...args], { cwd, env: GUESTFS_ENV, maxBuffer: 16 << 20 });
  return stdout;
}

/**
 * Builds (once, cached by recipe) an image and the truth LVM reported about it: `build` makes
 * disk.img in a private temp dir and returns the truth; the image is then moved into the cache.
 */
async function cachedImage(name: string, build: (dir: string) => Promise<string>): Promise<{ image: string; truth: LvmTruth }> {
  const key = createHash('sha256').update(JSON.stringify([BOOTROOTLV, HOLE_EDITS, TRUTH_COMMANDS, name])).digest('hex').slice(0, 12);
  const cache = fixtureDir();
  const image = join(cache, `lvm-${name}-${key}.img`);
  const truthPath = `${image}.truth.txt`;
  if (!(await exists(truthPath))) {
    await mkdir(cache, { recursive: true });
    const dir = await mkdtemp('/tmp/sparsify-lvm-');
    try {
      const truth = await build(dir);
      await execFileAsync('cp', ['--sparse=always', join(dir, 'disk.img'), `${image}.partial`]);
      await rename(`${image}.partial`, image);
      await writeFile(truthPath, truth); // written last: its presence means the image is complete
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return { image, truth: parseTruth(await readFile(truthPath, 'utf8')) };
}

async function pvReaderOf(disk: BlockReader): Promise<BlockReader> {
  const layout = await readLayout(disk);
  const pv = layout.volumes.find((v) => v.name === PV_NAME);
  if (!pv) throw new Error(`no ${PV_NAME} in ${JSON.stringify(layout.volumes)}`);
  return sliceReader(disk, pv.offsetBytes, pv.sizeBytes);
}

/** What LVM says: the linear LVs as PV byte ranges, and the free extents as PV byte ranges. */
function expected(truth: LvmTruth) {
  const { peStartBytes, extentBytes } = truth.pvSegments[0]!;
  const at = (pe: number) => peStartBytes + pe * extentBytes;
  return {
    extentBytes,
    volumes: truth.lvSegments.map((s) => ({
      name: `/dev/VG/${s.lv}`, offsetBytes: at(s.firstPe), sizeBytes: s.sizeBytes, kind: 'logical-volume',
    })),
    free: truth.pvSegments.filter((s) => s.lv === '').map((s) => ({ start: at(s.firstPe), end: at(s.firstPe + s.extents) })),
  };
}

async function ext4MagicAt(disk: BlockReader, offsetBytes: number): Promise<number> {
  const bytes = await disk.read(offsetBytes + 1080, 2);
  return bytes[0]! | (bytes[1]! << 8);
}

describeIntegration('LVM2 metadata of disks built by libguestfs', { tools: ['guestfish', 'pvcreate'] }, () => {
  let plain: { image: string; truth: LvmTruth };
  let holed: { image: string; truth: LvmTruth };

  beforeAll(async () => {
    plain = await cachedImage('bootrootlv', (dir) => guestfish(dir, [...BOOTROOTLV, ...TRUTH_COMMANDS]));
    holed = await cachedImage('bootrootlv-hole', async (dir) => {
      await execFileAsync('cp', ['--sparse=always', plain.image, join(dir, 'disk.img')]);
      return guestfish(dir, ['-a', 'disk.img', ...HOLE_EDITS, ...TRUTH_COMMANDS]);
    });
  }, 300_000);

  it('finds /dev/VG/LV where LVM put it, with the root ext4 at its start', async () => {
    await using disk = await openFileReader(plain.image);
    const pv = await pvReaderOf(disk);
    const result = await readLvm(pv, PV_NAME);
    const want = expected(plain.truth);
    // The appliance names the disk as it attached it (sda, or sdb when its own root came first):
    // what counts is that the LV lies on the disk's second partition.
    expect(plain.truth.lvSegments.map((s) => [s.lv, s.device])).toEqual([['LV', expect.stringMatching(/^\/dev\/sd[a-z]2$/)]]);
    expect(result.vgName).toBe('VG');
    expect(result.extentSizeBytes).toBe(want.extentBytes);
    expect(result.volumes).toEqual(want.volumes);
    expect(result.unhandled).toEqual([]);
    expect(result.freeOnPv.ranges).toEqual(want.free);
    const layout = await readLayout(disk);
    const pvOffset = layout.volumes.find((v) => v.name === PV_NAME)!.offsetBytes;
    expect(await ext4MagicAt(disk, pvOffset + result.volumes[0]!.offsetBytes)).toBe(0xef53);
  });

  it('reports the extents lvremove freed between two LVs, and those after them', async () => {
    await using disk = await openFileReader(holed.image);
    const result = await readLvm(await pvReaderOf(disk), PV_NAME);
    const want = expected(holed.truth);
    expect(result.volumes.map((v) => v.name)).toEqual(['/dev/VG/LV', '/dev/VG/LV3']);
    expect(result.volumes).toEqual(want.volumes);
    expect(want.free).toHaveLength(2);
    expect(result.freeOnPv.ranges).toEqual(want.free);
    const layout = await readLayout(disk);
    const pvOffset = layout.volumes.find((v) => v.name === PV_NAME)!.offsetBytes;
    expect(await ext4MagicAt(disk, pvOffset + result.volumes[0]!.offsetBytes)).toBe(0xef53);
  });
});

/** Two linear LVs: `a` restored as two segments (lvm2 merges them), `b` after a gap. */
const LV_SECTIONS = `
  logical_volumes {
    a {
      id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
      status = ["READ", "WRITE", "VISIBLE"]
      segment_count = 2
      segment1 { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 1 stripes = ["pv0", 0] }
      segment2 { start_extent = 4 extent_count = 4 type = "striped" stripe_count = 1 stripes = ["pv0", 4] }
    }
    b {
      id = "bbbbbb-bbbb-bbbb-bbbb-bbbb-bbbb-bbbbbb"
      status = ["READ", "WRITE", "VISIBLE"]
      segment_count = 1
      segment1 { start_extent = 0 extent_count = 5 type = "striped" stripe_count = 1 stripes = ["pv0", 20] }
    }
  }
`;

/** Whether the committed metadata text of the PV's first area runs past the end of the area. */
async function wrapped(device: string): Promise<boolean> {
  await using reader = await openFileReader(device);
  const area = (await probeLvmPv(reader))!.metadataAreas[0]!;
  const header = parseMdaHeader(await reader.read(area.offsetBytes, MDA_HEADER_BYTES), area, device);
  return header.text !== undefined && header.text.offsetBytes + header.text.sizeBytes > header.areaSizeBytes;
}

/**
 * The host's lvm2 writes metadata without device-mapper (only activation needs it): a VG on a
 * loop device with a small metadata area, LVs restored from a text, then tag changes until the
 * committed text wraps around the end of the circular buffer.
 */
describeIntegration(
  'LVM2 metadata wrapped around its circular buffer by the host lvm2',
  { tools: ['pvcreate', 'vgcreate', 'vgcfgbackup', 'vgcfgrestore', 'vgchange', 'lvs', 'pvs', 'losetup'], root: true },
  () => {
    const VG = 'sparsify_wrap';
    let dir = '';
    let dev = '';
    const lvmConfig = () =>
      `devices { filter = ["a|^${dev}$|", "r|.*|"] use_devicesfile = 0 hints = "none" } ` +
      'backup { backup = 0 archive = 0 } activation { udev_sync = 0 udev_rules = 0 }';
    const lvm = async (tool: string, ...args: string[]) =>
      (await execFileAsync(tool, ['--config', lvmConfig(), ...args], { maxBuffer: 16 << 20 })).stdout;

    beforeAll(async () => {
      dir = await mkdtemp('/tmp/sparsify-lvm-');
      const image = join(dir, 'pv.img');
      await writeFile(image, '');
      await execFileAsync('truncate', ['-s', '64M', image]);
      dev = (await execFileAsync('losetup', ['-f', '--show', image])).stdout.trim();
      await lvm('pvcreate', '-y', '--metadatasize', '36k', '--dataalignment', '64k', dev);
      await lvm('vgcreate', '-s', '1m', VG, dev);
      await lvm('vgcfgbackup', '-f', join(dir, 'vg.txt'), VG);
      const text = await readFile(join(dir, 'vg.txt'), 'utf8');
      const end = text.lastIndexOf('}');
      await writeFile(join(dir, 'vg-lvs.txt'), `${text.slice(0, end)}${LV_SECTIONS}${text.slice(end)}`);
      // It warns that it cannot check for active LVs (no device-mapper) and restores anyway.
      await lvm('vgcfgrestore', '-f', join(dir, 'vg-lvs.txt'), VG);
      for (let i = 0; i < 200 && !(await wrapped(dev)); i++) await lvm('vgchange', '--addtag', `t${i}`, VG);
    }, 120_000);

    afterAll(async () => {
      if (dev) await execFileAsync('losetup', ['-d', dev]);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('reads the committed text across the wrap, as lvs and pvs see the VG', async () => {
      expect(await wrapped(dev)).toBe(true);
      const lvRows = await lvm('lvs', '--segments', '--noheadings', '--units', 'b', '--nosuffix', '--separator', ',',
        '-o', 'lv_name,lv_size,seg_start_pe,seg_size_pe,devices', VG);
      const pvRows = await lvm('pvs', '--segments', '--noheadings', '--units', 'b', '--nosuffix', '--separator', ',',
        '-o', 'pv_name,pe_start,pv_pe_count,vg_extent_size,pvseg_start,pvseg_size,lv_name', dev);
      const want = expected(parseTruth(`${lvRows}---${pvRows}`));
      await using reader = await openFileReader(dev);
      const result = await readLvm(reader, dev);
      expect(result.vgName).toBe(VG);
      expect(result.volumes).toEqual(want.volumes.map((v) => ({ ...v, name: v.name.replace('/dev/VG/', `/dev/${VG}/`) })));
      expect(result.volumes.map((v) => v.name)).toEqual([`/dev/${VG}/a`, `/dev/${VG}/b`]);
      expect(result.freeOnPv.ranges).toEqual(want.free);
    });
  },
);
