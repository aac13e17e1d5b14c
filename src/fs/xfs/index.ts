import type { FsDriver } from '../driver.js';
import { readXfsFreeMap } from './free-map.js';
import { detectXfs } from './probe.js';

/** XFS: the superblock in sector 0; free space from each AG's by-block free-space B+tree. */
export const xfsDriver: FsDriver = { types: ['xfs'], detect: detectXfs, readFreeMap: readXfsFreeMap };
