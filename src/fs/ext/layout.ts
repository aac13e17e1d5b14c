/**
 * Where an ext2/3/4 filesystem keeps its fixed metadata: superblock backups, descriptor tables,
 * reserved GDT blocks (kernel Documentation/filesystems/ext4/blockgroup.rst, super.rst,
 * bitmaps.rst). Pure functions of the superblock; the rules follow the kernel's
 * ext4_bg_has_super, ext4_num_base_meta_blocks, descriptor_loc and ext4_check_descriptors.
 * Block numbers are plain numbers: the reader has checked that the filesystem fits its volume.
 */
import { EXT_SUPERBLOCK_OFFSET } from './probe.js';
import type { ExtGroupDescriptor } from './descriptor.js';
import type { ExtSuper } from './superblock.js';

function isPowerOf(n: number, base: number): boolean {
  let rest = n;
  while (rest > 1 && rest % base === 0) rest /= base;
  return rest === 1;
}

/** Whether `group` holds a superblock copy (super.rst: sparse_super, sparse_super2's s_backup_bgs). */
export function groupHasSuper(s: ExtSuper, group: number): boolean {
  if (group === 0) return true;
  if (s.backupGroups) return s.backupGroups.includes(group);
  if (group === 1 || !s.sparseSuper) return true;
  if (group % 2 === 0) return false;
  return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

/** The first block of `group`. */
export function groupFirstBlock(s: ExtSuper, group: number): number {
  return s.firstDataBlock + group * s.blocksPerGroup;
}

/** Blocks in `group`: the last group is short when s_blocks_count ends inside it. */
export function groupBlockCount(s: ExtSuper, group: number): number {
  return group === s.groupCount - 1 ? s.blocksCount - groupFirstBlock(s, group) : s.blocksPerGroup;
}

/** Clusters (bitmap bits) in `group`, rounding a partial last cluster up as the kernel does. */
export function groupClusterCount(s: ExtSuper, group: number): number {
  return Math.ceil(groupBlockCount(s, group) / s.clusterRatio);
}

/** The block holding the superblock in group 0: block 1 with 1 KiB blocks, else block 0. */
function superblockBlock(s: ExtSuper): number {
  return Math.floor(EXT_SUPERBLOCK_OFFSET / s.blockSizeBytes);
}

/** Whether `group` lies in a meta block group, whose one descriptor block it carries (blockgroup.rst). */
function inMetaLayout(s: ExtSuper, group: number): boolean {
  return s.metaBg && Math.floor(group / s.descriptorsPerBlock) >= s.firstMetaBg;
}

/** meta_bg: the first, second and last groups of a meta group each hold its descriptor block. */
function holdsMetaDescriptor(s: ExtSuper, group: number): boolean {
  const index = group % s.descriptorsPerBlock;
  return index === 0 || index === 1 || index === s.descriptorsPerBlock - 1;
}

/**
 * Blocks at the start of `group` taken by its superblock copy, descriptor table copy and
 * reserved GDT blocks (ext4_num_base_meta_blocks).
 */
export function baseMetaBlocks(s: ExtSuper, group: number): number {
  const hasSuper = groupHasSuper(s, group) ? 1 : 0;
  if (inMetaLayout(s, group)) return hasSuper + (holdsMetaDescriptor(s, group) ? 1 : 0);
  if (!hasSuper) return 0;
  return 1 + (s.metaBg ? s.firstMetaBg : s.descriptorBlocks) + s.reservedGdtBlocks;
}

/** The block range [start, end) of `group`'s base metadata; group 0's includes the boot block. */
export function baseMetaRange(s: ExtSuper, group: number): { start: number; end: number } {
  if (group === 0) return { start: 0, end: superblockBlock(s) + baseMetaBlocks(s, 0) };
  const start = groupFirstBlock(s, group);
  return { start, end: start + baseMetaBlocks(s, group) };
}

/** The block of descriptor-table block `index` (the primary copy), as descriptor_loc computes it. */
export function descriptorBlock(s: ExtSuper, index: number): number {
  if (!s.metaBg || index < s.firstMetaBg) return superblockBlock(s) + 1 + index;
  const group = index * s.descriptorsPerBlock;
  let offset = groupHasSuper(s, group) ? 1 : 0;
  // descriptor_loc: with 1 KiB blocks and s_first_data_block 0 (bigalloc) group 0's copy is at block 2.
  if (index === 0 && s.blockSizeBytes === 1024 && s.firstDataBlock === 0) offset++;
  return groupFirstBlock(s, group) + offset;
}

/**
 * What is wrong with where descriptor `group` puts its bitmaps and inode table, or undefined
 * (ext4_check_descriptors: inside the group, or anywhere in the filesystem with flex_bg, and
 * never over group 0's superblock and descriptor table).
 */
export function descriptorPlacementProblem(s: ExtSuper, group: number, d: ExtGroupDescriptor): string | undefined {
  const lowest = Math.max(s.flexBg ? s.firstDataBlock : groupFirstBlock(s, group), baseMetaRange(s, 0).end);
  const highest = s.flexBg ? s.blocksCount - 1 : groupFirstBlock(s, group) + groupBlockCount(s, group) - 1;
  const where = s.flexBg ? 'the filesystem' : `group ${group}`;
  const parts: Array<[string, number, number]> = [
    ['block bitmap', d.blockBitmap, 1],
    ['inode bitmap', d.inodeBitmap, 1],
    ['inode table', d.inodeTable, s.inodeTableBlocks],
  ];
  for (const [name, block, blocks] of parts) {
    if (block < lowest || block + blocks - 1 > highest) {
      return `${name} at block ${block} is outside ${where} (blocks ${lowest}-${highest})`;
    }
  }
  return undefined;
}
