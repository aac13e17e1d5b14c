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
  | 'unknown';

/** The result of probing one volume by its superblock. */
export interface ProbeResult {
  readonly type: FsType;
  readonly label?: string;
  readonly uuid?: string;
  /** Filesystem block or cluster size in bytes, when the superblock says. */
  readonly blockSizeBytes?: number;
  /** Free-form detail for the report: 'FAT32', 'swap with hibernation image', 'xfs v5', … */
  readonly detail?: string;
  /** A hibernation image lives here (swap): the next boot resumes from it, so it is left alone. */
  readonly hibernated?: boolean;
  /** The superblock says the journal needs recovery (not cleanly unmounted). */
  readonly dirty?: boolean;
}

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
