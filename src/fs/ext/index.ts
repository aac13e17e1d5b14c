import type { FsDriver } from '../driver.js';
import { readExtFreeMap } from './free-map.js';
import { detectExt } from './probe.js';

/** ext2/3/4: the superblock at byte 1024 (needs_recovery makes it dirty); free space from the group block bitmaps. */
export const extDriver: FsDriver = {
  types: ['ext2', 'ext3', 'ext4'],
  detect: detectExt,
  readFreeMap: readExtFreeMap,
  says: { dirty: 'the journal needs recovery (needs_recovery is set)' },
};
