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
}
