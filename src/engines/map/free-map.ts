/**
 * The map engine: free space from each filesystem's own allocation structures, read over the
 * Disk, with no mount, no root and no VM. A reader returns an untrusted map (with the reason)
 * when the filesystem is dirty or its counters disagree; then the volume goes to another engine
 * or is copied as it is (ARCHITECTURE.md invariants 2 and 4).
 */
import { ExtentSet } from '../../disk/extent-set.js';
import { sliceReader, type BlockReader } from '../../disk/types.js';
import { isSparsifyError } from '../../errors.js';
import { fsDriverFor } from '../../fs/probe.js';
import type { FreeMap, FsType, ProbeResult } from '../../fs/types.js';
import type { Volume } from '../../layout/types.js';

/** Whether the map engine can read this filesystem type: its driver has a free-map reader. */
export function canMap(type: FsType): boolean {
  return fsDriverFor(type)?.readFreeMap !== undefined;
}

/**
 * The volume's free map, or undefined when no reader knows its type. A decoding error is an
 * untrusted map with the error as its reason: a damaged filesystem is never read from its map.
 */
export async function readVolumeFreeMap(disk: BlockReader, volume: Volume, fs: ProbeResult): Promise<FreeMap | undefined> {
  const read = fsDriverFor(fs.type)?.readFreeMap;
  if (!read) return undefined;
  try {
    const map = await read(sliceReader(disk, volume.offsetBytes, volume.sizeBytes));
    if (map.trusted && map.free.ranges.some((r) => r.start < 0 || r.end > volume.sizeBytes)) {
      return { trusted: false, reason: 'its free map reaches outside the volume' };
    }
    return map;
  } catch (err) {
    if (isSparsifyError(err, 'BAD_IMAGE', 'BAD_LAYOUT', 'UNSUPPORTED')) return { trusted: false, reason: err.message };
    throw err;
  }
}

/** The free ranges of a trusted map as disk offsets. */
export function diskFreeRanges(volume: Volume, map: FreeMap): ExtentSet {
  return map.trusted ? map.free.clip(volume.sizeBytes).shift(volume.offsetBytes) : ExtentSet.empty;
}
