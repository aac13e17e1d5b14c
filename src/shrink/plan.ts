/**
 * Where every partition goes once the filesystems have shrunk: pure arithmetic over the layout.
 * Partitions keep their order; the first stays where it is; each other starts at the end of the
 * one before it rounded up to the alignment (1 MiB, as fdisk and gdisk align), never later than it was;
 * a logical MBR partition also keeps its EBR's distance before it (the EBR moves with it, see
 * src/layout/rewrite/mbr.ts), so the EBR lands after the end of the partition before; the disk ends right after
 * the last one plus, for GPT, the backup entry array and header, rounded up to a whole MiB. Moves are made in disk order,
 * each to a lower offset, so a forward copy never overwrites bytes it has still to read.
 */
import { SparsifyError } from '../errors.js';
import type { Layout, Volume } from '../layout/types.js';
import type { NewPlace } from '../layout/rewrite/types.js';
import { alignUp } from '../util/size.js';

/** Partitions start on 1 MiB boundaries, as fdisk and gdisk place them. */
export const PARTITION_ALIGN_BYTES = 1024 * 1024;

/** The shrunk disk ends on a whole MiB (never past its old end). */
export const DISK_ALIGN_BYTES = 1024 * 1024;

/** One partition's new size in bytes (its filesystem's new size, or its old size when it keeps it). */
export interface SizedVolume {
  readonly volume: Volume;
  readonly newSizeBytes: number;
  /** Bytes of its contents that must move with it (0: nothing to copy, a swap area made again). */
  readonly keepBytes: number;
}

/** One copy from the old place to the new, in bytes on the disk. */
export interface Move {
  readonly name: string;
  readonly fromBytes: number;
  readonly toBytes: number;
  readonly lengthBytes: number;
}

/** The new layout. */
export interface ShrinkLayout {
  /** Partition number → its place in logical blocks. */
  readonly places: Map<number, NewPlace>;
  /** In disk order; only partitions whose contents move. */
  readonly moves: Move[];
  /** Volume name → its new offset in bytes. */
  readonly offsets: Map<string, number>;
  readonly newDiskBytes: number;
}

/**
 * The places for `sized` (every partition of `layout`, any order). `gptBackupBytes` is what a
 * GPT needs after the last partition (0 for MBR). `leadBytes`: partition number → the bytes its
 * table needs right before it (a logical MBR partition's EBR and the gap to it); every logical
 * partition must have one.
 */
export function planLayout(layout: Layout, sized: readonly SizedVolume[], gptBackupBytes: number, leadBytes: ReadonlyMap<number, number> = new Map()): ShrinkLayout {
  const sb = layout.sectorSizeBytes;
  const places = new Map<number, NewPlace>();
  const moves: Move[] = [];
  const offsets = new Map<string, number>();
  const ordered = [...sized].sort((a, b) => a.volume.offsetBytes - b.volume.offsetBytes);
  // The first partition stays where it is: what lies before it (the table, a boot loader's gap) is not ours to move.
  let end = ordered[0]?.volume.offsetBytes ?? 0;
  for (const s of ordered) {
    const { volume } = s;
    if (volume.kind !== 'partition' || volume.partitionNumber === undefined) {
      throw new SparsifyError('UNSUPPORTED', `${volume.name} is not a partition: --shrink handles partitioned disks`);
    }
    const lead = leadBytes.get(volume.partitionNumber) ?? 0;
    if (layout.table === 'mbr' && volume.partitionNumber > 4 && !(lead > 0)) {
      throw new RangeError(`${volume.name} is a logical partition and its EBR's place before it is not known`);
    }
    if (s.newSizeBytes > volume.sizeBytes || s.newSizeBytes % sb !== 0 || s.keepBytes > s.newSizeBytes) {
      throw new RangeError(`${volume.name}: new size ${s.newSizeBytes} does not fit its ${volume.sizeBytes}-byte partition in whole blocks`);
    }
    const offsetBytes = Math.min(volume.offsetBytes, alignUp(end + lead, PARTITION_ALIGN_BYTES));
    places.set(volume.partitionNumber, { firstLba: offsetBytes / sb, sectors: s.newSizeBytes / sb });
    offsets.set(volume.name, offsetBytes);
    if (offsetBytes !== volume.offsetBytes && s.keepBytes > 0) {
      moves.push({ name: volume.name, fromBytes: volume.offsetBytes, toBytes: offsetBytes, lengthBytes: s.keepBytes });
    }
    end = Math.max(end, offsetBytes + s.newSizeBytes);
  }
  // A whole number of MiB: VHD and Azure round a disk up to one, and a GPT's backup must stay at the very end.
  const newDiskBytes = alignUp(alignUp(end, sb) + gptBackupBytes, DISK_ALIGN_BYTES);
  return { places, moves, offsets, newDiskBytes: Math.min(newDiskBytes, layout.diskSizeBytes) };
}
