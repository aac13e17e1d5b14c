import { describe, expect, it } from 'vitest';
import { canMap } from '../../../src/engines/map/free-map.js';
import { readExtFreeMap } from '../../../src/fs/ext/free-map.js';
import { readFatFreeMap } from '../../../src/fs/fat/free-map.js';
import { readNtfsFreeMap } from '../../../src/fs/ntfs/free-map.js';
import { FS_DRIVERS, fsDriverFor } from '../../../src/fs/probe.js';
import { readSwapFreeMap } from '../../../src/fs/swap/free-map.js';
import type { FsType } from '../../../src/fs/types.js';
import { readXfsFreeMap } from '../../../src/fs/xfs/free-map.js';

const FOREIGN: readonly FsType[] = ['exfat', 'f2fs', 'hfsplus', 'nilfs2', 'jfs', 'reiserfs'];
const ALL_TYPES: readonly FsType[] = ['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'ntfs', 'vfat', 'swap', 'luks', 'lvm-pv', ...FOREIGN];

describe('the filesystem drivers', () => {
  it('give every probed type exactly one driver, and none to unknown', () => {
    const listed = FS_DRIVERS.flatMap((d) => d.types);
    expect([...listed].sort()).toEqual([...ALL_TYPES].sort());
    expect(fsDriverFor('unknown')).toBeUndefined();
  });

  it('keep the precedence of the probe: LUKS, LVM PV, swap, ext, XFS, NTFS, FAT, btrfs, the foreign signatures', () => {
    expect(FS_DRIVERS.map((d) => d.types[0])).toEqual(['luks', 'lvm-pv', 'swap', 'ext2', 'xfs', 'ntfs', 'vfat', 'btrfs', 'exfat']);
  });

  it('hand the map engine the free-map reader of each type it reads, and none for the others', () => {
    const readers = Object.fromEntries(ALL_TYPES.map((t) => [t, fsDriverFor(t)?.readFreeMap]));
    expect(readers).toEqual({
      ext2: readExtFreeMap,
      ext3: readExtFreeMap,
      ext4: readExtFreeMap,
      xfs: readXfsFreeMap,
      ntfs: readNtfsFreeMap,
      vfat: readFatFreeMap,
      swap: readSwapFreeMap,
      btrfs: undefined,
      luks: undefined,
      'lvm-pv': undefined,
    });
    expect(ALL_TYPES.filter(canMap)).toEqual(['ext2', 'ext3', 'ext4', 'xfs', 'ntfs', 'vfat', 'swap']);
  });

  it('read a state beyond the superblock only for XFS (its log) and NTFS ($Volume, $LogFile, hiberfil.sys)', () => {
    expect(ALL_TYPES.filter((t) => fsDriverFor(t)?.readState)).toEqual(['xfs', 'ntfs']);
  });
});
