import type { FsDriver } from '../driver.js';
import { readFatFreeMap } from './free-map.js';
import { detectVfat } from './probe.js';

/** FAT12/16/32: the boot sector at byte 0; free space from the first FAT. */
export const fatDriver: FsDriver = { types: ['vfat'], detect: detectVfat, readFreeMap: readFatFreeMap };
