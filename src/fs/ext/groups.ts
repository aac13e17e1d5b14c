/**
 * Turns every block group's bitmap (read, or computed for BLOCK_UNINIT groups) into free byte
 * ranges, checking each against its descriptor (kernel Documentation/filesystems/ext4/
 * bitmaps.rst, blockgroup.rst "Lazy Block Group Initialization").
 */
import type { Range } from '../../disk/extent-set.js';
import type { BlockReader } from '../../disk/types.js';
import type { Verdict } from '../../util/verdict.js';
import { complementRuns, firstClearBit, parseBitmapFreeRuns, type FreeRuns } from './bitmap.js';
import { blockBitmapChecksumOk, isBlockUninit, type ExtGroupDescriptor } from './descriptor.js';
import { visitBlocks } from './io.js';
import { groupClusterCount, groupFirstBlock } from './layout.js';
import { groupMetadataBits, type BlockRanges } from './metadata.js';
import type { ExtSuper } from './superblock.js';

/** The free space of all groups, or why it cannot be trusted. */
export type GroupScan = Verdict<{ readonly free: Range[]; readonly freeClusters: number; readonly uninitGroups: number }>;

function unitName(s: ExtSuper): string {
  return s.clusterRatio > 1 ? 'clusters' : 'blocks';
}

/** Checks a read bitmap against its checksum and the group's metadata; its free runs, or why not. */
function readGroupRuns(
  s: ExtSuper,
  group: number,
  d: ExtGroupDescriptor,
  bitmap: Uint8Array,
  metaBits: number[],
): FreeRuns | string {
  if (!blockBitmapChecksumOk(s, d, bitmap)) return `group ${group}: block bitmap checksum mismatch`;
  for (let i = 0; i < metaBits.length; i += 2) {
    const clear = firstClearBit(bitmap, metaBits[i]!, metaBits[i + 1]!);
    if (clear >= 0) {
      const block = groupFirstBlock(s, group) + clear * s.clusterRatio;
      return `group ${group}: block bitmap marks metadata block ${block} free`;
    }
  }
  return parseBitmapFreeRuns(bitmap, groupClusterCount(s, group));
}

/**
 * The free runs of one group, checked against its descriptor's free count. A BLOCK_UNINIT
 * group's bitmap is computed as ext4_init_block_bitmap does, but more conservatively: every
 * block of any group's metadata that lies in this group is used, not only its own.
 */
function groupRuns(
  s: ExtSuper,
  group: number,
  d: ExtGroupDescriptor,
  bitmap: Uint8Array | undefined,
  metadata: BlockRanges,
): FreeRuns | string {
  const metaBits = groupMetadataBits(s, group, metadata);
  const runs = bitmap
    ? readGroupRuns(s, group, d, bitmap, metaBits)
    : complementRuns(groupClusterCount(s, group), metaBits);
  if (typeof runs === 'string') return runs;
  if (runs.freeBits !== d.freeClusters) {
    const source = bitmap ? 'its block bitmap' : 'its computed BLOCK_UNINIT bitmap';
    return `group ${group}: ${source} has ${runs.freeBits} free ${unitName(s)}, its descriptor says ${d.freeClusters}`;
  }
  return runs;
}

/** Appends a group's runs to `out` as volume-relative byte ranges. */
function pushByteRanges(s: ExtSuper, group: number, runs: FreeRuns, out: Range[]): void {
  const clusterBytes = s.blockSizeBytes * s.clusterRatio;
  const base = groupFirstBlock(s, group) * s.blockSizeBytes;
  for (let i = 0; i < runs.runs.length; i += 2) {
    out.push({ start: base + runs.runs[i]! * clusterBytes, end: base + runs.runs[i + 1]! * clusterBytes });
  }
}

/**
 * Reads the block bitmaps of initialized groups in block order (adjacent ones in one read) and
 * computes the others; stops at the first group whose bitmap and descriptor disagree.
 */
export async function scanGroups(
  reader: BlockReader,
  s: ExtSuper,
  descriptors: readonly ExtGroupDescriptor[],
  metadata: BlockRanges,
): Promise<GroupScan> {
  const free: Range[] = [];
  let freeClusters = 0;
  const take = (group: number, bitmap: Uint8Array | undefined): string | undefined => {
    const runs = groupRuns(s, group, descriptors[group]!, bitmap, metadata);
    if (typeof runs === 'string') return runs;
    freeClusters += runs.freeBits;
    pushByteRanges(s, group, runs, free);
    return undefined;
  };
  const groupsByBitmap = new Map<number, number[]>();
  let uninitGroups = 0;
  for (let group = 0; group < descriptors.length; group++) {
    const d = descriptors[group]!;
    if (isBlockUninit(s, d)) {
      uninitGroups++;
      const reason = take(group, undefined);
      if (reason) return { ok: false, reason };
    } else {
      const sharing = groupsByBitmap.get(d.blockBitmap);
      if (sharing) sharing.push(group);
      else groupsByBitmap.set(d.blockBitmap, [group]);
    }
  }
  const reason = await visitBlocks(reader, s.blockSizeBytes, [...groupsByBitmap.keys()], 'block bitmap', (block, bytes) => {
    for (const group of groupsByBitmap.get(block)!) {
      const why = take(group, bytes);
      if (why) return why;
    }
    return undefined;
  });
  return reason ? { ok: false, reason } : { ok: true, free, freeClusters, uninitGroups };
}
