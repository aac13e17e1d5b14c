import type { FsDriver } from '../driver.js';
import { readSwapFreeMap } from './free-map.js';
import { detectSwap } from './probe.js';

/** Linux swap: the signature at the end of the first page; free space is every page after it. */
export const swapDriver: FsDriver = {
  types: ['swap'],
  detect: detectSwap,
  readFreeMap: readSwapFreeMap,
  says: { hibernated: 'holds a hibernation image' },
};
