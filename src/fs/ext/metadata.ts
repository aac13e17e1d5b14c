/**
 * Every block an ext filesystem's fixed metadata occupies (kernel Documentation/filesystems/
 * ext4/blockgroup.rst): each group's superblock copy, descriptor and reserved GDT blocks, and
 * its bitmaps and inode table wherever flex_bg put them. Kept in typed arrays: a 4 TiB
 * filesystem with 1 KiB blocks has over half a million groups.
 */
import type { ExtGroupDescriptor } from './descriptor.js';
import { baseMetaRange, groupBlockCount, groupFirstBlock } from './layout.js';
import type { ExtSuper } from './superblock.js';

/** Sorted, disjoint, non-adjacent block ranges [starts[i], ends[i]). */
export interface BlockRanges {
  readonly starts: Float64Array;
  readonly ends: Float64Array;
  readonly count: number;
}

interface RangeList {
  starts: Float64Array;
  ends: Float64Array;
}

/** Sorts a list by start in place, unless it already is (mke2fs lays groups out in order). */
function sortByStart(list: RangeList): RangeList {
  const { starts, ends } = list;
  let sorted = true;
  for (let i = 1; i < starts.length && sorted; i++) sorted = starts[i - 1]! <= starts[i]!;
  if (sorted) return list;
  const order = Array.from(starts.keys()).sort((a, b) => starts[a]! - starts[b]!);
  return { starts: Float64Array.from(order, (i) => starts[i]!), ends: Float64Array.from(order, (i) => ends[i]!) };
}

/** Merges sorted lists into one sorted list of disjoint ranges, dropping empty ones. */
function mergeLists(lists: RangeList[]): BlockRanges {
  const total = lists.reduce((sum, l) => sum + l.starts.length, 0);
  const starts = new Float64Array(total);
  const ends = new Float64Array(total);
  const cursor = lists.map(() => 0);
  let count = 0;
  for (;;) {
    let pick = -1;
    const head = (k: number): number => lists[k]!.starts[cursor[k]!]!;
    lists.forEach((l, k) => {
      if (cursor[k]! < l.starts.length && (pick < 0 || head(k) < head(pick))) pick = k;
    });
    if (pick < 0) break;
    const start = lists[pick]!.starts[cursor[pick]!]!;
    const end = lists[pick]!.ends[cursor[pick]!]!;
    cursor[pick]!++;
    if (end <= start) continue;
    if (count > 0 && start <= ends[count - 1]!) ends[count - 1] = Math.max(ends[count - 1]!, end);
    else {
      starts[count] = start;
      ends[count] = end;
      count++;
    }
  }
  return { starts, ends, count };
}

/** The blocks of all fixed metadata, from the superblock's geometry and every descriptor. */
export function metadataBlocks(s: ExtSuper, descriptors: readonly ExtGroupDescriptor[]): BlockRanges {
  const n = descriptors.length;
  const list = (): RangeList => ({ starts: new Float64Array(n), ends: new Float64Array(n) });
  const [base, blockBitmaps, inodeBitmaps, inodeTables] = [list(), list(), list(), list()];
  for (let group = 0; group < n; group++) {
    const d = descriptors[group]!;
    const r = baseMetaRange(s, group);
    base.starts[group] = r.start;
    base.ends[group] = r.end;
    blockBitmaps.starts[group] = d.blockBitmap;
    blockBitmaps.ends[group] = d.blockBitmap + 1;
    inodeBitmaps.starts[group] = d.inodeBitmap;
    inodeBitmaps.ends[group] = d.inodeBitmap + 1;
    inodeTables.starts[group] = d.inodeTable;
    inodeTables.ends[group] = d.inodeTable + s.inodeTableBlocks;
  }
  return mergeLists([base, blockBitmaps, inodeBitmaps, inodeTables].map(sortByStart));
}

/** Index of the first range that ends after `block`. */
function firstEndingAfter(ranges: BlockRanges, block: number): number {
  let lo = 0;
  let hi = ranges.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges.ends[mid]! <= block) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The clusters of `group` that metadata occupies, as sorted flat [start, end) bitmap-bit pairs.
 * A cluster holding any metadata block counts whole (bigalloc).
 */
export function groupMetadataBits(s: ExtSuper, group: number, metadata: BlockRanges): number[] {
  const first = groupFirstBlock(s, group);
  const end = first + groupBlockCount(s, group);
  const bits: number[] = [];
  for (let i = firstEndingAfter(metadata, first); i < metadata.count && metadata.starts[i]! < end; i++) {
    const startBit = Math.floor((Math.max(metadata.starts[i]!, first) - first) / s.clusterRatio);
    const endBit = Math.ceil((Math.min(metadata.ends[i]!, end) - first) / s.clusterRatio);
    const last = bits.length - 1;
    if (last > 0 && startBit <= bits[last]!) bits[last] = Math.max(bits[last]!, endBit);
    else bits.push(startBit, endBit);
  }
  return bits;
}
