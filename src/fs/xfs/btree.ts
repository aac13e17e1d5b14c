/**
 * Blocks of the by-block free-space B+tree (bnobt): short-form B+tree blocks with magic "ABTB"
 * (v4) or "AB3B" (v5, with self-describing header and CRC). "XFS Algorithms & Data Structures",
 * "B+trees" (Short Format B+trees) and "AG Free Space B+trees"; libxfs/xfs_format.h, struct
 * xfs_btree_block_shdr and struct xfs_alloc_rec; checks after xfs_btree_sblock_verify.
 */
import { u64be, viewOf } from '../../binary/bytes.js';
import { firstDataAgbno } from './ag.js';
import { BB_BYTES, crcMatches, damage, NULL_AGBLOCK, sameUuid } from './common.js';
import type { XfsGeometry } from './superblock.js';

const ABTB_MAGIC = 0x41425442; // "ABTB"
const AB3B_MAGIC = 0x41423342; // "AB3B"
/** struct xfs_btree_block with the short (AG) header. */
const HDR = { magic: 0, level: 4, numrecs: 6, leftsib: 8, rightsib: 12, blkno: 16, uuid: 32, owner: 48, crc: 52 } as const;
const V4_HEADER_BYTES = 16; // XFS_BTREE_SBLOCK_LEN
const V5_HEADER_BYTES = 56; // XFS_BTREE_SBLOCK_CRC_LEN
const UUID_BYTES = 16;
/** xfs_alloc_rec / xfs_alloc_key: ar_startblock, ar_blockcount (both be32); pointers are be32 AG blocks. */
const REC_BYTES = 8;
const PTR_BYTES = 4;

/** A free extent of an AG: `blockCount` blocks from AG block `startBlock`. */
export interface XfsFreeExtent {
  readonly startBlock: number;
  readonly blockCount: number;
}

/** The shape of by-block tree blocks in one geometry. */
export interface AllocBtreeShape {
  readonly headerBytes: number;
  readonly leafMaxRecs: number;
  readonly nodeMaxRecs: number;
  readonly maxLevels: number;
}

/** Header size, records per leaf and node (xfs_allocbt_maxrecs), and the most levels possible. */
export function allocBtreeShape(g: XfsGeometry): AllocBtreeShape {
  const headerBytes = g.version === 5 ? V5_HEADER_BYTES : V4_HEADER_BYTES;
  const leafMaxRecs = Math.floor((g.blockSizeBytes - headerBytes) / REC_BYTES);
  const nodeMaxRecs = Math.floor((g.blockSizeBytes - headerBytes) / (REC_BYTES + PTR_BYTES));
  return { headerBytes, leafMaxRecs, nodeMaxRecs, maxLevels: maxAllocBtreeLevels(g, leafMaxRecs, nodeMaxRecs) };
}

/**
 * The most levels a by-block tree can have in this geometry (xfs_alloc_compute_maxlevels: at
 * most (agblocks + 1) / 2 records, blocks at least half full).
 */
function maxAllocBtreeLevels(g: XfsGeometry, leafMaxRecs: number, nodeMaxRecs: number): number {
  const leafMin = Math.max(1, Math.floor(leafMaxRecs / 2));
  const nodeMin = Math.max(2, Math.floor(nodeMaxRecs / 2));
  let blocks = Math.ceil(Math.floor((g.agBlocks + 1) / 2) / leafMin);
  let levels = 1;
  while (blocks > 1) {
    blocks = Math.ceil(blocks / nodeMin);
    levels++;
  }
  return levels;
}

/** A decoded bnobt block: records when a leaf (level 0), child pointers when a node. */
export interface XfsAllocBlock {
  readonly level: number;
  readonly leftSibling: number;
  readonly rightSibling: number;
  readonly records: readonly XfsFreeExtent[];
  readonly children: readonly number[];
}

/** Where a block sits: the decoder checks it against what its parent or the AGF promised. */
export interface AllocBlockPlace {
  readonly agno: number;
  readonly agbno: number;
  readonly agLengthBlocks: number;
  readonly level: number;
}

/** Decodes and checks one bnobt block; throws XfsDamage ("xfs AG 3 bnobt block 17: …"). */
export function parseXfsAllocBlock(bytes: Uint8Array, g: XfsGeometry, shape: AllocBtreeShape, at: AllocBlockPlace): XfsAllocBlock {
  const where = `AG ${at.agno} bnobt block ${at.agbno}`;
  if (bytes.length !== g.blockSizeBytes) damage(where, `${bytes.length} bytes, not one ${g.blockSizeBytes}-byte block`);
  const v = viewOf(bytes);
  checkHeader(bytes, g, at, where);
  const level = v.getUint16(HDR.level);
  if (level !== at.level) damage(where, `level ${level}, its parent expects ${at.level}`);
  const numRecs = v.getUint16(HDR.numrecs);
  const maxRecs = level === 0 ? shape.leafMaxRecs : shape.nodeMaxRecs;
  if (numRecs > maxRecs || (level > 0 && numRecs === 0)) damage(where, `${numRecs} records (${level > 0 ? 1 : 0}..${maxRecs})`);
  const leftSibling = sibling(v.getUint32(HDR.leftsib), at, where);
  const rightSibling = sibling(v.getUint32(HDR.rightsib), at, where);
  if (level === 0) return { level, leftSibling, rightSibling, records: leafRecords(v, g, shape, at, numRecs, where), children: [] };
  return { level, leftSibling, rightSibling, records: [], children: nodeChildren(v, g, shape, at, numRecs, where) };
}

function checkHeader(bytes: Uint8Array, g: XfsGeometry, at: AllocBlockPlace, where: string): void {
  const v = viewOf(bytes);
  const magic = v.getUint32(HDR.magic);
  if (magic !== (g.version === 5 ? AB3B_MAGIC : ABTB_MAGIC)) damage(where, `bad magic 0x${magic.toString(16)}`);
  if (g.version !== 5) return;
  if (!crcMatches(bytes, HDR.crc)) damage(where, 'CRC mismatch');
  if (!sameUuid(bytes.subarray(HDR.uuid, HDR.uuid + UUID_BYTES), g.metadataUuid)) damage(where, 'UUID is not the filesystem’s');
  const daddr = ((at.agno * g.agBlocks + at.agbno) * g.blockSizeBytes) / BB_BYTES;
  if (u64be(v, HDR.blkno) !== daddr) damage(where, `bb_blkno ${v.getBigUint64(HDR.blkno)} is not its own address ${daddr}`);
  if (v.getUint32(HDR.owner) !== at.agno) damage(where, `owner AG ${v.getUint32(HDR.owner)}`);
}

function sibling(agbno: number, at: AllocBlockPlace, where: string): number {
  if (agbno === NULL_AGBLOCK) return agbno;
  if (agbno === at.agbno || agbno >= at.agLengthBlocks) damage(where, `sibling pointer ${agbno} is itself or outside the AG`);
  return agbno;
}

function leafRecords(v: DataView, g: XfsGeometry, shape: AllocBtreeShape, at: AllocBlockPlace, n: number, where: string): XfsFreeExtent[] {
  const records: XfsFreeExtent[] = [];
  const first = firstDataAgbno(g);
  let previousEnd = 0;
  for (let i = 0; i < n; i++) {
    const at8 = shape.headerBytes + i * REC_BYTES;
    const startBlock = v.getUint32(at8);
    const blockCount = v.getUint32(at8 + 4);
    if (blockCount === 0 || startBlock < first || startBlock + blockCount > at.agLengthBlocks) {
      damage(where, `record ${i} (${startBlock}+${blockCount}) lies outside the AG's free area`);
    }
    if (startBlock < previousEnd) damage(where, `record ${i} (${startBlock}+${blockCount}) is out of order or overlaps`);
    previousEnd = startBlock + blockCount;
    records.push({ startBlock, blockCount });
  }
  return records;
}

function nodeChildren(v: DataView, g: XfsGeometry, shape: AllocBtreeShape, at: AllocBlockPlace, n: number, where: string): number[] {
  const children: number[] = [];
  const first = firstDataAgbno(g);
  // Keys fill a node's first maxrecs slots, pointers follow them (xfs_btree_ptr_addr).
  const ptrBase = shape.headerBytes + shape.nodeMaxRecs * REC_BYTES;
  let previousKey = -1;
  for (let i = 0; i < n; i++) {
    const key = v.getUint32(shape.headerBytes + i * REC_BYTES);
    if (key <= previousKey) damage(where, `key ${i} (${key}) is out of order`);
    previousKey = key;
    const child = v.getUint32(ptrBase + i * PTR_BYTES);
    if (child < first || child >= at.agLengthBlocks) damage(where, `pointer ${i} (${child}) lies outside the AG`);
    children.push(child);
  }
  return children;
}
