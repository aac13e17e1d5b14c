import type { FsDriver } from '../driver.js';
import { readNtfsFreeMap } from './free-map.js';
import { detectNtfs } from './probe.js';

/** NTFS: the boot sector at byte 0; free space from the $Bitmap file. */
export const ntfsDriver: FsDriver = { types: ['ntfs'], detect: detectNtfs, readFreeMap: readNtfsFreeMap };
