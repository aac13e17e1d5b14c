/** What each filesystem folder under src/fs exports: one driver, listed once in probe.ts. */
import type { BlockReader } from '../disk/types.js';
import type { Detector } from './probe-common.js';
import type { FreeMap, FsState, FsType } from './types.js';

/** Reads one filesystem's free map from a reader that covers exactly the volume. */
export type FreeMapReader = (reader: BlockReader) => Promise<FreeMap>;

/** One filesystem or volume format: how the probe finds it and, if it can, how its free map is read. */
export interface FsDriver {
  /** The probe result types its detector reports (ext2, ext3 and ext4 for the one ext driver). */
  readonly types: readonly FsType[];
  /** Looks for its signature; FS_DRIVERS in probe.ts decides when several match. */
  readonly detect: Detector;
  /**
   * Reads the typed state (dirty, hibernated) from a few metadata blocks, for a volume the probe
   * chose this driver for; absent when `detect` already knows it from the superblock. Damage it
   * cannot decode is no state: the free-map reader refuses that volume with its own reason.
   */
  readonly readState?: (reader: BlockReader) => Promise<FsState>;
  /** The map engine's reader; absent when free space cannot be read without mounting. */
  readonly readFreeMap?: FreeMapReader;
  /** How the report says this format's states, after its type: "xfs map not trusted (…)", "swap holds …". */
  readonly says?: { readonly dirty?: string; readonly hibernated?: string };
}
