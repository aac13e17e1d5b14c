/**
 * readLayout and probeVolume against images partitioned by sgdisk/sfdisk and formatted by the
 * real mkfs tools; the truth is what sfdisk --json, sgdisk -p and blkid -p say.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openFileReader } from '../helpers/file-reader.js';
import { sliceReader } from '../../src/disk/types.js';
import { probeVolume } from '../../src/fs/probe.js';
import type { ProbeResult } from '../../src/fs/types.js';
import { readLayout } from '../../src/layout/read-layout.js';
import type { Layout } from '../../src/layout/types.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;

async function sparseFile(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, 'w');
  await handle.truncate(sizeBytes);
  await handle.close();
}

function run(file: string, args: readonly string[], input?: string): string {
  return execFileSync(file, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Loop devices this file attached and has not detached yet. */
const attached = new Set<string>();

function detach(dev: string): void {
  run('losetup', ['-d', dev]);
  attached.delete(dev);
}

/** Runs `fn` on a loop device over [offset, offset+size) of `file`, detaching it afterwards. */
async function withLoop<T>(
  file: string,
  offsetBytes: number,
  sizeBytes: number,
  fn: (dev: string) => T | Promise<T>,
): Promise<T> {
  const dev = run('losetup', [
    '-f',
    '--show',
    '-o',
    String(offsetBytes),
    '--sizelimit',
    String(sizeBytes),
    file,
  ]).trim();
  attached.add(dev);
  try {
    return await fn(dev);
  } finally {
    detach(dev);
  }
}

/** blkid's low-level probe of a device or file, as KEY=value pairs (empty when it finds nothing). */
function blkid(path: string): Record<string, string> {
  let out = '';
  try {
    out = run('blkid', ['-p', '-o', 'export', path]);
  } catch (err) {
    if ((err as { status?: number }).status !== 2) throw err;
  }
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

const BLKID_TYPES: Record<string, string> = { crypto_LUKS: 'luks', LVM2_member: 'lvm-pv' };

/** What blkid says, in ProbeResult terms. */
function expectedProbe(tags: Record<string, string>): Partial<ProbeResult> {
  const type = tags.TYPE ?? 'unknown';
  return {
    type: (BLKID_TYPES[type] ?? type) as ProbeResult['type'],
    ...(tags.UUID ? { uuid: tags.UUID } : {}),
    ...(tags.LABEL ? { label: tags.LABEL } : {}),
  };
}

function probeFields(p: ProbeResult): Partial<ProbeResult> {
  return { type: p.type, ...(p.uuid ? { uuid: p.uuid } : {}), ...(p.label ? { label: p.label } : {}) };
}

interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
}

function sfdiskPartitions(image: string): SfdiskPartition[] {
  return (JSON.parse(run('sfdisk', ['--json', image])) as { partitiontable: { partitions: SfdiskPartition[] } })
    .partitiontable.partitions;
}

/**
 * Formats every partition through a loop device and returns blkid's view of each, by number.
 * Each loop device is also read as a block device: its size comes from sysfs, and probing it
 * must agree with blkid too.
 */
async function formatAll(
  image: string,
  layout: Layout,
  mkfs: Record<number, (dev: string) => string[]>,
): Promise<Map<number, Record<string, string>>> {
  const tags = new Map<number, Record<string, string>>();
  for (const v of layout.volumes) {
    const argv = mkfs[v.partitionNumber!];
    if (!argv) continue;
    const found = await withLoop(image, v.offsetBytes, v.sizeBytes, async (dev) => {
      const [file, ...args] = argv(dev);
      run(file!, args);
      const blkidTags = blkid(dev);
      await using device = await openFileReader(dev);
      expect(device.sizeBytes).toBe(v.sizeBytes);
      expect(probeFields(await probeVolume(device)), `${dev} for ${v.name}`).toEqual(expectedProbe(blkidTags));
      return blkidTags;
    });
    tags.set(v.partitionNumber!, found);
  }
  return tags;
}

async function probeAll(image: string): Promise<{ layout: Layout; probes: Map<number, ProbeResult> }> {
  await using reader = await openFileReader(image);
  const layout = await readLayout(reader);
  const probes = new Map<number, ProbeResult>();
  for (const v of layout.volumes) {
    probes.set(v.partitionNumber!, await probeVolume(sliceReader(reader, v.offsetBytes, v.sizeBytes)));
  }
  return { layout, probes };
}

const GPT_UUIDS = {
  ext4: '3f1b7a52-5c1e-4d0a-9b7e-0c2f4a6d8e01',
  xfs: '3f1b7a52-5c1e-4d0a-9b7e-0c2f4a6d8e02',
  swap: '3f1b7a52-5c1e-4d0a-9b7e-0c2f4a6d8e05',
  btrfs: '3f1b7a52-5c1e-4d0a-9b7e-0c2f4a6d8e06',
};

describeIntegration(
  'layout and probe on images made by sgdisk, sfdisk and mkfs',
  {
    tools: [
      'sgdisk',
      'sfdisk',
      'losetup',
      'blkid',
      'mkfs.ext2',
      'mkfs.ext3',
      'mkfs.ext4',
      'mkfs.xfs',
      'mkfs.btrfs',
      'mkfs.ntfs',
      'mkfs.vfat',
      'mkswap',
    ],
    root: true,
  },
  () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp('/tmp/sparsify-layout-');
    });
    afterAll(async () => {
      for (const dev of attached) detach(dev);
      await rm(dir, { recursive: true, force: true });
    });

    it('reads a GPT with six filesystems as sgdisk, sfdisk and blkid do', async () => {
      // 520 MiB sparse: xfsprogs 6.x refuses filesystems under 300 MB, btrfs-progs under 109 MiB.
      const image = join(dir, 'gpt.raw');
      await sparseFile(image, 520 * MiB);
      // Partition 6 (swap) is made before 5, so disk order differs from entry order.
      run('sgdisk', [
        '-o',
        '-n',
        '1:1MiB:+32MiB',
        '-t',
        '1:8300',
        '-n',
        '2:0:+300MiB',
        '-t',
        '2:8300',
        '-n',
        '3:0:+16MiB',
        '-t',
        '3:0700',
        '-n',
        '4:0:+40MiB',
        '-t',
        '4:ef00',
        '-n',
        '6:0:+8MiB',
        '-t',
        '6:8200',
        '-n',
        '5:0:+120MiB',
        '-t',
        '5:8300',
        image,
      ]);
      const before = await probeAll(image);
      const tags = await formatAll(image, before.layout, {
        1: (dev) => ['mkfs.ext4', '-q', '-F', '-L', 'root', '-U', GPT_UUIDS.ext4, dev],
        2: (dev) => ['mkfs.xfs', '-q', '-f', '-L', 'data', '-m', `uuid=${GPT_UUIDS.xfs}`, dev],
        3: (dev) => ['mkfs.ntfs', '-Q', '-F', '-q', '-L', 'Windows', dev],
        4: (dev) => ['mkfs.vfat', '-F', '32', '-s', '1', '-n', 'EFI', '-i', '5E6FA1B2', dev],
        6: (dev) => ['mkswap', '-L', 'swap', '-U', GPT_UUIDS.swap, dev],
        5: (dev) => ['mkfs.btrfs', '-q', '-f', '-L', 'pool', '-U', GPT_UUIDS.btrfs, dev],
      });
      const { layout, probes } = await probeAll(image);

      expect(layout.table).toBe('gpt');
      expect(layout.notes).toEqual([]);
      const sfdisk = sfdiskPartitions(image);
      expect(layout.volumes.map((v) => [v.name, v.offsetBytes / 512, v.sizeBytes / 512, v.partitionType])).toEqual(
        [...sfdisk]
          .sort((a, b) => a.start - b.start)
          .map((p) => [`/dev/sda${p.node.slice(image.length)}`, p.start, p.size, p.type.toLowerCase()]),
      );
      // sgdisk -p: "Number  Start (sector)  End (sector)  Size  Code  Name".
      const printed = run('sgdisk', ['-p', image])
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => /^\d+$/.test(f[0] ?? '') && f.length >= 5);
      expect(printed.map((f) => [Number(f[0]), Number(f[1]), Number(f[2])]).sort((a, b) => a[0]! - b[0]!)).toEqual(
        [...layout.volumes]
          .sort((a, b) => a.partitionNumber! - b.partitionNumber!)
          .map((v) => [v.partitionNumber, v.offsetBytes / 512, (v.offsetBytes + v.sizeBytes) / 512 - 1]),
      );

      for (const [n, t] of tags) {
        expect(t.TYPE, `blkid on partition ${n}`).toBeTruthy();
        expect(probeFields(probes.get(n)!), `partition ${n}`).toEqual(expectedProbe(t));
      }
      expect(probes.get(1)).toMatchObject({ type: 'ext4', blockSizeBytes: Number(tags.get(1)!.BLOCK_SIZE) });
      expect(probes.get(2)).toMatchObject({ type: 'xfs', detail: 'xfs v5', blockSizeBytes: 4096 });
      expect(probes.get(3)).toMatchObject({ type: 'ntfs', blockSizeBytes: 4096 });
      expect(probes.get(4)).toMatchObject({ type: 'vfat', detail: tags.get(4)!.VERSION, blockSizeBytes: 512 });
      expect(probes.get(5)).toMatchObject({ type: 'btrfs', blockSizeBytes: Number(tags.get(5)!.BLOCK_SIZE) });
      expect(probes.get(6)).toMatchObject({ type: 'swap', blockSizeBytes: 4096 });
    });

    it('reads an MBR with two primaries and three logical partitions as sfdisk and blkid do', async () => {
      const image = join(dir, 'mbr.raw');
      await sparseFile(image, 200 * MiB);
      run('sfdisk', ['-q', image], 'label: dos\n,32MiB,83\n,40MiB,6\n,,5\n,32MiB,83\n,8MiB,82\n,,83\n');
      const before = await probeAll(image);
      const tags = await formatAll(image, before.layout, {
        1: (dev) => ['mkfs.ext4', '-q', '-F', '-L', 'boot', dev],
        2: (dev) => ['mkfs.vfat', '-n', 'DOS', dev],
        5: (dev) => ['mkfs.ext3', '-q', '-F', '-L', 'home', dev],
        6: (dev) => ['mkswap', '-L', 'swap2', dev],
        7: (dev) => ['mkfs.ext2', '-q', '-F', dev],
      });
      const { layout, probes } = await probeAll(image);

      expect(layout.table).toBe('mbr');
      expect(layout.notes).toEqual([]);
      const sfdisk = sfdiskPartitions(image).filter((p) => !['5', 'f', '85'].includes(p.type));
      expect(layout.volumes.map((v) => [v.name, v.offsetBytes / 512, v.sizeBytes / 512, v.partitionType])).toEqual(
        sfdisk.map((p) => [`/dev/sda${p.node.slice(image.length)}`, p.start, p.size, p.type.padStart(2, '0')]),
      );
      expect([...tags.keys()].sort()).toEqual([1, 2, 5, 6, 7]);
      for (const [n, t] of tags) {
        expect(t.TYPE, `blkid on partition ${n}`).toBeTruthy();
        expect(probeFields(probes.get(n)!), `partition ${n}`).toEqual(expectedProbe(t));
      }
      expect(probes.get(2)).toMatchObject({ detail: tags.get(2)!.VERSION });
      expect(probes.get(5)?.type).toBe('ext3');
      expect(probes.get(7)?.type).toBe('ext2');
    });

    it.each([
      ['ext4', (path: string) => ['mkfs.ext4', '-q', '-F', '-L', 'whole', path]],
      ['vfat', (path: string) => ['mkfs.vfat', '-n', 'WHOLE', path]],
    ])('takes a whole-disk %s (no table) as one volume', async (name, mkfs) => {
      const image = join(dir, `whole-${name}.raw`);
      await sparseFile(image, 64 * MiB);
      const [file, ...args] = mkfs(image);
      run(file!, args);
      await using reader = await openFileReader(image);
      const layout = await readLayout(reader);
      expect(layout.table).toBe('none');
      expect(layout.volumes).toEqual([{ name: '/dev/sda', offsetBytes: 0, sizeBytes: 64 * MiB, kind: 'whole-disk' }]);
      const tags = blkid(image);
      expect(tags.TYPE).toBe(name);
      expect(probeFields(await probeVolume(reader))).toEqual(expectedProbe(tags));
    });
  },
);

describeIntegration(
  'probe of LUKS and LVM PV headers made by their tools',
  { tools: ['cryptsetup', 'pvcreate', 'losetup', 'blkid'], root: true },
  () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp('/tmp/sparsify-layout-');
    });
    afterAll(async () => {
      for (const dev of attached) detach(dev);
      await rm(dir, { recursive: true, force: true });
    });

    it.each(['luks1', 'luks2'])('finds %s as blkid does', async (type) => {
      const image = join(dir, `${type}.raw`);
      await sparseFile(image, 32 * MiB);
      const labelArgs = type === 'luks2' ? ['--label', 'vault'] : [];
      // PBKDF2 with few iterations keeps luksFormat fast; the header layout is what matters.
      run(
        'cryptsetup',
        [
          'luksFormat',
          '-q',
          '--type',
          type,
          '--pbkdf',
          'pbkdf2',
          '--pbkdf-force-iterations',
          '1000',
          ...labelArgs,
          image,
          '-',
        ],
        'pw',
      );
      await using reader = await openFileReader(image);
      const result = await probeVolume(reader);
      const tags = blkid(image);
      expect(tags.TYPE).toBe('crypto_LUKS');
      expect(probeFields(result)).toEqual(expectedProbe(tags));
      expect(result.detail).toBe(type.toUpperCase());
    });

    it('finds an LVM2 PV as blkid does', async () => {
      const image = join(dir, 'pv.raw');
      await sparseFile(image, 16 * MiB);
      const tags = await withLoop(image, 0, 16 * MiB, (dev) => {
        run('pvcreate', ['-ff', '-y', '--norestorefile', '-u', 'Zq3vYd-9WcP-Hm2e-Ls7K-Xa4T-Rb8N-Jf6Ugh', dev]);
        return blkid(dev);
      });
      await using reader = await openFileReader(image);
      const result = await probeVolume(reader);
      expect(probeFields(result)).toEqual(expectedProbe(tags));
      expect(result).toMatchObject({
        type: 'lvm-pv',
        uuid: 'Zq3vYd-9WcP-Hm2e-Ls7K-Xa4T-Rb8N-Jf6Ugh',
        detail: 'LVM2 PV, metadata area at byte 4096',
      });
    });
  },
);
