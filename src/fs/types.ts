import type { ExtentSet } from '../disk/extent-set.js';

/** What probing a volume's first bytes found. */
export type FsType =
  | 'ext2'
  | 'ext3'
  | 'ext4'
  | 'xfs'
  | 'btrfs'
  | 'ntfs'
  | 'vfat'
  | 'swap'
  | 'luks'
  | 'lvm-pv'
  // Known by signature only (fs/foreign/): the appliance's kernel mounts them.
  | 'f2fs'
  | 'jfs'
  | 'hfsplus'
  | 'exfat'
  | 'reiserfs'
  | 'nilfs2'
  | 'unknown';

/** The result of probing one volume by its superblock. */
export interface ProbeResult {
  readonly type: FsType;
  readonly label?: string;
  readonly uuid?: string;
  /** Filesystem block or cluster size in bytes, when the superblock says. */
  readonly blockSizeBytes?: number;
  /** Free-form detail for the report only ('FAT32', 'xfs v5', …): nothing decides from it. */
  readonly detail?: string;
  /**
   * A hibernation image lives here: a swap area written by swsusp, uswsusp or TuxOnIce, or an
   * NTFS volume of a Windows hibernated or shut down with Fast Startup. The next boot resumes
   * from it, so it is left alone.
   */
  readonly hibernated?: boolean;
  /**
   * Not cleanly unmounted, so its on-disk maps may be stale until the journal is replayed: ext
   * needs_recovery, an XFS log that needs recovery, NTFS's dirty flag or a $LogFile to replay.
   */
  readonly dirty?: boolean;
  /** btrfs: the devices the filesystem spans (num_devices), given only when more than one. */
  readonly devices?: number;
}

/** The typed state of a probed volume that decides whether its maps may be read. */
export type FsState = Pick<ProbeResult, 'dirty' | 'hibernated'>;

/**
 * What a filesystem's own allocation structures say about its free space (the map engine).
 * `free` is in bytes relative to the start of the volume.
 */
export type FreeMap =
  | {
      readonly trusted: true;
      /** Byte ranges (volume-relative) that the filesystem does not use. */
      readonly free: ExtentSet;
      /** Allocation unit (block or cluster) in bytes. */
      readonly unitBytes: number;
      /** What the filesystem's own counters say is free, for the report and cross-checks. */
      readonly counterFreeBytes: number;
      readonly detail?: string;
    }
  | {
      readonly trusted: false;
      /** Why the map must not be used: dirty journal, counters disagree, unsupported feature, … */
      readonly reason: string;
    };
