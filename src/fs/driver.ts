/** What each filesystem folder under src/fs exports: one driver, listed once in probe.ts. */
import type { BlockReader } from '../disk/types.js';
import type { Detector } from './probe-common.js';
import type { FreeMap, FsType } from './types.js';

/** Reads one filesystem's free map from a reader that covers exactly the volume. */
export type FreeMapReader = (reader: BlockReader) => Promise<FreeMap>;

/** One filesystem or volume format: how the probe finds it and, if it can, how its free map is read. */
export interface FsDriver {
  /** The probe result types its detector reports (ext2, ext3 and ext4 for the one ext driver). */
  readonly types: readonly FsType[];
  /** Looks for its signature; FS_DRIVERS in probe.ts decides when several match. */
  readonly detect: Detector;
  /** The map engine's reader; absent when free space cannot be read without mounting. */
  readonly readFreeMap?: FreeMapReader;
}
