import type { FsDriver } from '../driver.js';
import { detectBtrfs } from './probe.js';

/** btrfs: the superblock at 64 KiB; no free-map reader (the mount engine trims it). */
export const btrfsDriver: FsDriver = { types: ['btrfs'], detect: detectBtrfs };
