import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../../src/disk/extent-set.js';
import { mountPlanFor } from '../../../../src/engines/mount/mount-plan.js';
import { parseFstrimBytes, trimRanges } from '../../../../src/engines/mount/trim.js';
import { mountFailureReason, parseMountInfo } from '../../../../src/host/mounts.js';

describe('parseMountInfo', () => {
  it('reads mount point, type, source and read-only state, undoing octal escapes', () => {
    const text = [
      '42 27 0:39 / /tmp/sparsify-qemu-x/qsd-1.img rw,nosuid,nodev,relatime - fuse /dev/fuse rw,user_id=0,group_id=0',
      '43 27 7:1 / /tmp/my\\040dir/mnt rw,relatime shared:5 master:1 - fuseblk /dev/loop1 rw,allow_other,blksize=4096',
      '44 27 7:2 / /tmp/hib ro,relatime - fuseblk /dev/loop2 ro,user_id=0,group_id=0,allow_other,blksize=4096',
      '45 27 7:3 / /tmp/errors rw,relatime - ext4 /dev/loop3 ro,errors=remount-ro',
      'garbage',
      '',
    ].join('\n');
    expect(parseMountInfo(text)).toEqual([
      { mountPoint: '/tmp/sparsify-qemu-x/qsd-1.img', fsType: 'fuse', source: '/dev/fuse', readOnly: false },
      { mountPoint: '/tmp/my dir/mnt', fsType: 'fuseblk', source: '/dev/loop1', readOnly: false },
      { mountPoint: '/tmp/hib', fsType: 'fuseblk', source: '/dev/loop2', readOnly: true },
      { mountPoint: '/tmp/errors', fsType: 'ext4', source: '/dev/loop3', readOnly: true },
    ]);
  });
});

describe('mountPlanFor', () => {
  it('mounts every ext version with the ext4 driver', () => {
    for (const type of ['ext2', 'ext3', 'ext4'] as const) {
      expect(mountPlanFor({ type })).toEqual({ kind: 'mount', fsType: 'ext4', options: ['nodev', 'nosuid', 'noexec'] });
    }
  });

  it('adds nouuid for xfs, the top subvolume for btrfs, and uses ntfs-3g for ntfs', () => {
    expect(mountPlanFor({ type: 'xfs' })).toMatchObject({ options: expect.arrayContaining(['nouuid', 'nodev']) });
    expect(mountPlanFor({ type: 'btrfs' })).toMatchObject({ options: expect.arrayContaining(['subvolid=5']) });
    expect(mountPlanFor({ type: 'ntfs' })).toMatchObject({ fsType: 'ntfs-3g' });
  });

  it('does not mount swap, LUKS or unknown data', () => {
    for (const type of ['swap', 'luks', 'lvm-pv', 'unknown'] as const) {
      expect(mountPlanFor({ type }).kind).toBe('unmountable');
    }
  });
});

describe('tool output', () => {
  it('parses the bytes fstrim trimmed', () => {
    expect(parseFstrimBytes('/mnt: 181.9 MiB (190755840 bytes) trimmed\n')).toBe(190755840);
    expect(parseFstrimBytes('/mnt: 0 B (0 bytes) trimmed\n')).toBe(0);
    expect(parseFstrimBytes('')).toBeUndefined();
  });

  it('keeps one line of a mount failure', () => {
    const stderr =
      "mount: /tmp/x/mnt-1: unknown filesystem type 'vfat'.\n       dmesg(1) may have more information after failed mount system call.\n";
    expect(mountFailureReason(stderr)).toBe("unknown filesystem type 'vfat'");
    expect(mountFailureReason('NTFS signature is missing.\nFailed to mount \'/dev/loop0\': Invalid argument\n')).toBe(
      'NTFS signature is missing',
    );
  });
});

describe('trimRanges', () => {
  const MiB = 1024 * 1024;

  it('trims everything in one call when nothing is kept', () => {
    expect(trimRanges(64 * MiB, ExtentSet.empty)).toBeUndefined();
  });

  it('leaves out the MiB-aligned neighbourhood of each kept range', () => {
    const keep = ExtentSet.from([{ start: 12_288_000, end: 12_288_512 }, { start: 40 * MiB, end: 41 * MiB + 1 }]);
    expect(trimRanges(64 * MiB, keep)?.ranges).toEqual([
      { start: 0, end: 11 * MiB },
      { start: 12 * MiB, end: 40 * MiB },
      { start: 42 * MiB, end: 64 * MiB },
    ]);
  });

  it('gives no range at all when the kept bytes cover the volume', () => {
    expect(trimRanges(MiB, ExtentSet.of(0, 512))?.ranges).toEqual([]);
  });
});
