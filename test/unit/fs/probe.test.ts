import { describe, expect, it } from 'vitest';
import { probeVolume } from '../../../src/fs/probe.js';
import { lvmLabelCrc } from '../../../src/layout/lvm-pv.js';
import { MiB, flip, memReader, putAscii, putFatBootSector, view } from '../layout/fixtures.js';

const UUID = '0123abcd-4567-89ef-0011-223344556677';
const UUID_BYTES = UUID.replace(/-/g, '')
  .match(/../g)!
  .map((h) => parseInt(h, 16));

interface ExtOptions {
  compat?: number;
  incompat?: number;
  roCompat?: number;
  label?: string;
  liveGdt?: boolean;
}

/** An ext superblock with 4 KiB blocks and 1000 blocks; group 0's descriptor when `liveGdt`. */
function putExt(vol: Uint8Array, o: ExtOptions = {}): void {
  const sb = vol.subarray(1024, 2048);
  const v = view(sb);
  v.setUint32(0x4, 1000, true);
  v.setUint32(0x18, 2, true);
  v.setUint32(0x20, 32768, true);
  v.setUint32(0x28, 8192, true);
  v.setUint16(0x38, 0xef53, true);
  v.setUint32(0x5c, o.compat ?? 0, true);
  v.setUint32(0x60, o.incompat ?? 0x2, true);
  v.setUint32(0x64, o.roCompat ?? 0x3, true);
  sb.set(UUID_BYTES, 0x68);
  putAscii(sb, 0x78, o.label ?? '');
  if (o.liveGdt ?? true) {
    const gdt = view(vol.subarray(4096, 4096 + 32));
    [5, 6, 7].forEach((block, i) => gdt.setUint32(i * 4, block, true));
  }
}

function putXfs(vol: Uint8Array, version: 4 | 5): void {
  const v = view(vol);
  putAscii(vol, 0, 'XFSB');
  v.setUint32(4, 4096, false);
  v.setBigUint64(8, 4000n, false);
  vol.set(UUID_BYTES, 32);
  v.setUint32(84, 1000, false);
  v.setUint32(88, 4, false);
  v.setUint16(100, version === 5 ? 0xb4a5 : 0xb4a4, false);
  v.setUint16(102, 512, false);
  putAscii(vol, 108, 'xfslabel');
  vol[120] = 12;
  vol[121] = 9;
  putAscii(vol, 512, 'XAGF');
  putAscii(vol, 1024, 'XAGI');
}

function putSwap(vol: Uint8Array, pageBytes = 4096, sig = 'SWAPSPACE2'): void {
  const v = view(vol);
  v.setUint32(1024, 1, true);
  v.setUint32(1028, vol.length / pageBytes - 1, true);
  vol.set(UUID_BYTES, 1036);
  putAscii(vol, 1052, 'swaplabel');
  putAscii(vol, pageBytes - 10, sig);
}

/** An NTFS boot sector with 4 KiB clusters, the MFT at cluster 4, 1 KiB records, $Volume labelled. */
function putNtfs(vol: Uint8Array, label: string): void {
  const v = view(vol);
  vol.set([0xeb, 0x52, 0x90], 0);
  putAscii(vol, 3, 'NTFS    ');
  v.setUint16(11, 512, true);
  vol[13] = 8;
  vol[21] = 0xf8;
  v.setBigUint64(0x28, BigInt(vol.length / 512 - 1), true);
  v.setBigUint64(0x30, 4n, true);
  vol[0x40] = 0xf6;
  v.setBigUint64(0x48, 0x1a2b3c4d5e6f7080n, true);
  for (const n of [0, 3]) {
    putMftRecord(vol.subarray(16384 + n * 1024, 16384 + (n + 1) * 1024), n === 3 ? label : undefined);
  }
}

function putMftRecord(rec: Uint8Array, label: string | undefined): void {
  const v = view(rec);
  putAscii(rec, 0, 'FILE');
  v.setUint16(4, 0x30, true); // update sequence array offset
  v.setUint16(6, 3, true); // USN + one entry per 512-byte stride
  v.setUint16(0x30, 0x0007, true);
  v.setUint16(0x14, 0x38, true); // first attribute
  let at = 0x38;
  if (label !== undefined) {
    const valueBytes = label.length * 2;
    const length = (0x18 + valueBytes + 7) & ~7;
    v.setUint32(at, 0x60, true);
    v.setUint32(at + 4, length, true);
    v.setUint32(at + 0x10, valueBytes, true);
    v.setUint16(at + 0x14, 0x18, true);
    for (let i = 0; i < label.length; i++) v.setUint16(at + 0x18 + i * 2, label.charCodeAt(i), true);
    at += length;
  }
  v.setUint32(at, 0xffffffff, true);
  // Protect both strides: the real last two bytes go to the array, the USN takes their place.
  for (let i = 1; i <= 2; i++) {
    v.setUint16(0x30 + i * 2, v.getUint16(i * 512 - 2, true), true);
    v.setUint16(i * 512 - 2, 0x0007, true);
  }
}

const probe = (vol: Uint8Array) => probeVolume(memReader(vol));

describe('probeVolume: ext', () => {
  it.each([
    ['ext2', {}],
    ['ext3', { compat: 0x4 }],
    ['ext4', { compat: 0x4, incompat: 0x2 | 0x40 | 0x80 | 0x200 }],
    ['ext4', { incompat: 0x2 | 0x40 }],
    ['ext4', { compat: 0x4, roCompat: 0x3 | 0x8 }],
  ] as const)('finds %s for %j', async (type, o: ExtOptions) => {
    const vol = new Uint8Array(MiB);
    putExt(vol, { ...o, label: 'root' });
    expect(await probe(vol)).toEqual({ type, uuid: UUID, label: 'root', blockSizeBytes: 4096 });
  });

  it('says when the journal needs recovery', async () => {
    const vol = new Uint8Array(MiB);
    putExt(vol, { compat: 0x4, incompat: 0x2 | 0x4 });
    expect(await probe(vol)).toMatchObject({ type: 'ext3', detail: 'journal needs recovery' });
  });

  it('reports an external journal device as unknown', async () => {
    const vol = new Uint8Array(MiB);
    putExt(vol, { incompat: 0x8 });
    expect(await probe(vol)).toMatchObject({ type: 'unknown', detail: 'ext3/4 external journal device' });
  });

  it('rejects a block size above 64 KiB', async () => {
    const vol = new Uint8Array(MiB);
    putExt(vol);
    view(vol).setUint32(1024 + 0x18, 7, true);
    expect(await probe(vol)).toEqual({ type: 'unknown' });
  });
});

describe('probeVolume: other filesystems', () => {
  it.each([4, 5] as const)('finds xfs v%i', async (version) => {
    const vol = new Uint8Array(MiB);
    putXfs(vol, version);
    expect(await probe(vol)).toEqual({
      type: 'xfs',
      uuid: UUID,
      label: 'xfslabel',
      blockSizeBytes: 4096,
      detail: `xfs v${version}`,
    });
  });

  it('finds btrfs at 64 KiB', async () => {
    const vol = new Uint8Array(MiB);
    const sb = vol.subarray(65536);
    sb.set(UUID_BYTES, 0x20);
    view(sb).setBigUint64(0x30, 65536n, true);
    putAscii(sb, 0x40, '_BHRfS_M');
    view(sb).setUint32(0x90, 4096, true);
    view(sb).setUint32(0x94, 16384, true);
    putAscii(sb, 0x12b, 'data');
    expect(await probe(vol)).toEqual({ type: 'btrfs', uuid: UUID, label: 'data', blockSizeBytes: 4096 });
    view(sb).setBigUint64(0x30, 0n, true);
    expect(await probe(vol)).toEqual({ type: 'unknown' });
  });

  it('finds ntfs with its serial and the label of $Volume', async () => {
    const vol = new Uint8Array(MiB);
    putNtfs(vol, 'Windows');
    expect(await probe(vol)).toEqual({
      type: 'ntfs',
      uuid: '1A2B3C4D5E6F7080',
      label: 'Windows',
      blockSizeBytes: 4096,
    });
  });

  it('drops the ntfs label when the $Volume fixups do not match', async () => {
    const vol = new Uint8Array(MiB);
    putNtfs(vol, 'Windows');
    flip(vol, 16384 + 3 * 1024 + 510, 0xff);
    expect(await probe(vol)).toEqual({ type: 'ntfs', uuid: '1A2B3C4D5E6F7080', blockSizeBytes: 4096 });
  });

  it.each([
    ['FAT12', { totalSectors: 2048, sectorsPerCluster: 4, reserved: 1, fatSectors: 2, rootEntries: 512 }],
    ['FAT16', { totalSectors: 65536, sectorsPerCluster: 1, reserved: 1, fatSectors: 256, rootEntries: 512 }],
    [
      'FAT32',
      { totalSectors: 140000, sectorsPerCluster: 1, reserved: 32, fatSectors: 1100, rootEntries: 0, fat32: true },
    ],
  ] as const)('finds vfat %s with the boot sector label and volume id', async (fatType, o) => {
    const vol = new Uint8Array(o.totalSectors * 512);
    putFatBootSector(vol, { ...o, label: 'BOOT', volumeId: 0x5e6fa1b2 });
    expect(await probe(vol)).toEqual({
      type: 'vfat',
      uuid: '5E6F-A1B2',
      label: 'BOOT',
      blockSizeBytes: o.sectorsPerCluster * 512,
      detail: fatType,
    });
  });

  it('prefers the root directory label entry, as blkid does, and ignores NO NAME', async () => {
    const o = { totalSectors: 65536, sectorsPerCluster: 1, reserved: 1, fatSectors: 256, rootEntries: 512 };
    const vol = new Uint8Array(o.totalSectors * 512);
    putFatBootSector(vol, o);
    expect((await probe(vol)).label).toBeUndefined();
    const root = (1 + 2 * 256) * 512;
    putAscii(vol, root, 'DELETED    ');
    vol[root] = 0xe5;
    vol[root + 11] = 0x08;
    putAscii(vol, root + 32, 'NEWLABEL   ');
    vol[root + 32 + 11] = 0x08;
    expect((await probe(vol)).label).toBe('NEWLABEL');
  });

  it('finds swap with UUID and label at the end of a 4 KiB page', async () => {
    const vol = new Uint8Array(MiB);
    putSwap(vol);
    expect(await probe(vol)).toEqual({ type: 'swap', uuid: UUID, label: 'swaplabel', blockSizeBytes: 4096 });
  });

  it.each(['S1SUSPEND', 'S2SUSPEND', 'ULSUSPEND', 'LINHIB0001'])(
    'finds swap holding a %s hibernation image',
    async (sig) => {
      const vol = new Uint8Array(MiB);
      putSwap(vol, 4096, sig);
      expect(await probe(vol)).toMatchObject({ type: 'swap', detail: 'swap with hibernation image', hibernated: true });
    },
  );

  it('finds 64 KiB-page swap and old v0 swap', async () => {
    const big = new Uint8Array(MiB);
    putSwap(big, 65536);
    expect(await probe(big)).toMatchObject({ type: 'swap', blockSizeBytes: 65536, uuid: UUID });
    const old = new Uint8Array(MiB);
    putAscii(old, 4086, 'SWAP-SPACE');
    expect(await probe(old)).toEqual({ type: 'swap', blockSizeBytes: 4096, detail: 'swap v0' });
  });

  it.each([1, 2] as const)('finds LUKS%i', async (version) => {
    const vol = new Uint8Array(MiB);
    vol.set([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, version]);
    putAscii(vol, 168, UUID);
    if (version === 2) putAscii(vol, 24, 'secret');
    expect(await probe(vol)).toEqual({
      type: 'luks',
      uuid: UUID,
      detail: `LUKS${version}`,
      ...(version === 2 ? { label: 'secret' } : {}),
    });
  });

  it('finds an LVM2 PV by its label', async () => {
    const vol = new Uint8Array(MiB);
    const label = vol.subarray(512, 1024);
    putAscii(label, 0, 'LABELONE');
    view(label).setBigUint64(8, 1n, true);
    view(label).setUint32(20, 32, true);
    putAscii(label, 24, 'LVM2 001');
    putAscii(label, 32, 'abcdef0123456789ABCDEF0123456789');
    view(label).setBigUint64(64, BigInt(MiB), true);
    view(label).setBigUint64(72, BigInt(MiB), true); // data area, then a terminator
    view(label).setBigUint64(104, 4096n, true); // metadata area, then a terminator
    view(label).setBigUint64(112, 4096n * 255n, true);
    view(label).setUint32(16, lvmLabelCrc(label), true);
    expect(await probe(vol)).toEqual({
      type: 'lvm-pv',
      uuid: 'abcdef-0123-4567-89AB-CDEF-0123-456789',
      detail: 'LVM2 PV, metadata area at byte 4096',
    });
  });
});

describe('probeVolume: small, blank and ambiguous volumes', () => {
  it.each([0, 1, 511, 1100, 4000])('says unknown for a %i-byte blank volume', async (size) => {
    expect(await probe(new Uint8Array(size))).toEqual({ type: 'unknown' });
  });

  it('does not read past the end of a volume cut inside a superblock', async () => {
    const ext = new Uint8Array(MiB);
    putExt(ext);
    expect(await probe(ext.slice(0, 1500))).toEqual({ type: 'unknown' });
    const btrfs = new Uint8Array(65536 + 100);
    putAscii(btrfs, 65536 + 64, '_BHRfS_M');
    expect(await probe(btrfs)).toEqual({ type: 'unknown' });
    const swap = new Uint8Array(MiB);
    putSwap(swap, 65536);
    expect(await probe(swap.slice(0, 60000))).toEqual({ type: 'unknown' });
  });

  it('reads only a few small regions', async () => {
    const vol = new Uint8Array(64 * MiB);
    putExt(vol);
    const reader = memReader(vol);
    await probeVolume(reader);
    const total = reader.reads.reduce((sum, [, length]) => sum + length, 0);
    expect(total).toBeLessThanOrEqual(16 * 1024);
  });

  it('takes a vfat whose FAT is live over a stale ext superblock inside it', async () => {
    const o = { totalSectors: 65536, sectorsPerCluster: 1, reserved: 1, fatSectors: 256, rootEntries: 512 };
    const vol = new Uint8Array(o.totalSectors * 512);
    putExt(vol, { liveGdt: false });
    putFatBootSector(vol, { ...o, label: 'EFI' });
    const result = await probe(vol);
    expect(result).toMatchObject({ type: 'vfat', label: 'EFI' });
    expect(result.detail).toMatch(
      /^FAT16; also found ext2 signature at byte 1080; only the vfat structures are consistent/,
    );
  });

  it('takes an ext made over an old FAT, whose boot sector mke2fs left alone', async () => {
    const o = { totalSectors: 65536, sectorsPerCluster: 1, reserved: 1, fatSectors: 256, rootEntries: 512 };
    const vol = new Uint8Array(o.totalSectors * 512);
    putFatBootSector(vol, o);
    vol.fill(0, 512, 8192); // mke2fs wrote its own blocks over the FAT
    putExt(vol, { compat: 0x4, incompat: 0x2 | 0x40 });
    const result = await probe(vol);
    expect(result.type).toBe('ext4');
    expect(result.detail).toMatch(/also found FAT16 signature at byte 0; only the ext4 structures are consistent/);
  });

  it('takes swap over an old FAT boot sector by precedence when both look live', async () => {
    const o = { totalSectors: 2048, sectorsPerCluster: 4, reserved: 1, fatSectors: 2, rootEntries: 512 };
    const vol = new Uint8Array(o.totalSectors * 512);
    putFatBootSector(vol, o);
    putSwap(vol);
    const result = await probe(vol);
    expect(result.type).toBe('swap');
    expect(result.detail).toMatch(/chose swap by precedence/);
  });
});
