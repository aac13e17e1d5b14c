import type { FsDriver } from '../driver.js';
import { readXfsFreeMap } from './free-map.js';
import { XFS_LOG_DIRTY } from './log.js';
import { detectXfs } from './probe.js';
import { readXfsState } from './state.js';

/** XFS: the superblock in sector 0; dirty when its log needs recovery; free space from each AG's by-block B+tree. */
export const xfsDriver: FsDriver = {
  types: ['xfs'],
  detect: detectXfs,
  readState: readXfsState,
  readFreeMap: readXfsFreeMap,
  says: { dirty: XFS_LOG_DIRTY },
};
