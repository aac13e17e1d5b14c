/**
 * The map engine's XFS reader: the free space of an XFS volume from its own by-block free-space
 * B+trees, read without a mount. It reads the primary superblock, a few blocks of the internal
 * log (to prove a clean unmount), and per AG the AGF, the AGFL and the bnobt blocks.
 *
 * Trust rules — the answer is `{trusted: false, reason}` when:
 * - the superblock fails its v5 CRC, has sb_inprogress set, a realtime section (sb_rblocks ≠ 0),
 *   NEEDSREPAIR or a feature this reader does not know (v4: unsupported version bits; v5: unknown
 *   incompat, ro_compat or log_incompat bits), or the filesystem is larger than the volume;
 * - the log is external, or was not cleanly unmounted (see log.ts for the rule);
 * - any AGF, AGFL or bnobt block is damaged: bad magic, CRC, UUID, owner or self address,
 *   out-of-range pointer or record, a loop, sibling pointers that do not chain, records out of
 *   order; or a free extent covers an AG header, an AGFL block, a bnobt block or the log;
 * - an AG's bnobt does not sum to agf_freeblks, or its longest extent is not agf_longest;
 * - without lazy counters, sb_fdblocks ≠ Σ(agf_freeblks + agf_flcount + agf_btreeblks), the sum
 *   xfs_initialize_perag_data computes. With lazy counters (every v5, and v4 lazy-count=1) the
 *   kernel only writes sb_fdblocks at unmount and rebuilds it from the AGFs whenever it doubts it,
 *   so the AGFs are authoritative: a difference is only noted in `detail`.
 * It throws SparsifyError BAD_IMAGE only when sector 0 is not an XFS superblock with possible
 * geometry: then the volume is not an XFS filesystem at all. Decoders throw XfsDamage (BAD_IMAGE
 * naming the structure); this function turns those into untrusted maps.
 *
 * AGFL blocks are in use (reserved for tree growth) and not in the bnobt, so they are never
 * reported free; neither is the internal log, which is allocated space.
 */
import { ExtentSet, type Range } from '../../disk/extent-set.js';
import type { BlockReader } from '../../disk/types.js';
import { AGF_SECTOR, AGFL_SECTOR, parseXfsAgf, parseXfsAgfl, type XfsAgf } from './ag.js';
import { readBnobt } from './bnobt.js';
import { allocBtreeShape, type AllocBtreeShape, type XfsFreeExtent } from './btree.js';
import { damage, XfsDamage } from './common.js';
import { readXfsLogRefusal } from './log.js';
import {
  agBlockOffsetBytes,
  isXfsV5,
  parseXfsGeometry,
  readXfsSuperblockSector,
  superblockRefusal,
  xfsSuperblockCrcOk,
  type XfsGeometry,
} from './superblock.js';
import type { FreeMap } from '../types.js';

/** One AG's free extents and the AGF counters they were checked against. */
interface AgFreeSpace {
  readonly agno: number;
  readonly extents: readonly XfsFreeExtent[];
  readonly agf: XfsAgf;
}

/** The free space of the XFS filesystem on `reader` (one volume), or why it cannot be trusted. */
export async function readXfsFreeMap(reader: BlockReader): Promise<FreeMap> {
  const sb = await readXfsSuperblockSector(reader);
  if (isXfsV5(sb) && !xfsSuperblockCrcOk(sb)) return untrusted('xfs superblock: CRC mismatch');
  const g = parseXfsGeometry(sb);
  try {
    const refusal = superblockRefusal(g, reader.sizeBytes) ?? (await readXfsLogRefusal(reader, g))?.reason;
    if (refusal) return untrusted(refusal);
    const shape = allocBtreeShape(g);
    const ags: AgFreeSpace[] = [];
    for (let agno = 0; agno < g.agCount; agno++) ags.push(await readAgFreeSpace(reader, g, shape, agno));
    return assemble(g, ags);
  } catch (err) {
    if (err instanceof XfsDamage) return untrusted(err.message);
    throw err;
  }
}

function untrusted(reason: string): FreeMap {
  return { trusted: false, reason };
}

async function readAgFreeSpace(reader: BlockReader, g: XfsGeometry, shape: AllocBtreeShape, agno: number): Promise<AgFreeSpace> {
  const agStart = agBlockOffsetBytes(g, agno, 0);
  const sector = g.sectorSizeBytes;
  const agf = parseXfsAgf(await reader.read(agStart + AGF_SECTOR * sector, sector), g, agno, shape.maxLevels);
  const agfl = parseXfsAgfl(await reader.read(agStart + AGFL_SECTOR * sector, sector), g, agno, agf);
  const { extents, treeBlocks } = await readBnobt(reader, g, shape, agno, agf);
  checkCounters(agno, extents, agf);
  for (const agbno of agfl) if (isFree(extents, agbno, 1)) damage(`AG ${agno} AGFL`, `block ${agbno} is also in the bnobt`);
  for (const agbno of treeBlocks) if (isFree(extents, agbno, 1)) damage(`AG ${agno} bnobt block ${agbno}`, 'the block is listed as free');
  const log = logInAg(g, agno);
  if (log && isFree(extents, log.agbno, log.blocks)) damage(`AG ${agno}`, 'the bnobt lists part of the internal log as free');
  return { agno, extents, agf };
}

/** Σ records must equal agf_freeblks and the largest must equal agf_longest. */
function checkCounters(agno: number, extents: readonly XfsFreeExtent[], agf: XfsAgf): void {
  let sum = 0;
  let longest = 0;
  for (const e of extents) {
    sum += e.blockCount;
    longest = Math.max(longest, e.blockCount);
  }
  if (sum !== agf.freeBlocks) damage(`AG ${agno}`, `the bnobt holds ${sum} free blocks but agf_freeblks says ${agf.freeBlocks}`);
  if (longest !== agf.longestFree) {
    damage(`AG ${agno}`, `the longest free extent is ${longest} blocks but agf_longest says ${agf.longestFree}`);
  }
}

/** Whether [agbno, agbno+blocks) meets any extent (extents sorted and disjoint). */
function isFree(extents: readonly XfsFreeExtent[], agbno: number, blocks: number): boolean {
  let lo = 0;
  let hi = extents.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const e = extents[mid]!;
    if (e.startBlock + e.blockCount <= agbno) lo = mid + 1;
    else if (e.startBlock >= agbno + blocks) hi = mid - 1;
    else return true;
  }
  return false;
}

/** The internal log's blocks when they lie in AG `agno` (the log never spans AGs). */
function logInAg(g: XfsGeometry, agno: number): { agbno: number; blocks: number } | undefined {
  const agSpan = 2 ** g.agBlockLog;
  if (g.logStartFsb === 0 || Math.floor(g.logStartFsb / agSpan) !== agno) return undefined;
  return { agbno: g.logStartFsb % agSpan, blocks: g.logBlocks };
}

function assemble(g: XfsGeometry, ags: readonly AgFreeSpace[]): FreeMap {
  const ranges: Range[] = [];
  let freeBlocks = 0;
  let counted = 0;
  let extentCount = 0;
  for (const { agno, extents, agf } of ags) {
    for (const e of extents) {
      const start = agBlockOffsetBytes(g, agno, e.startBlock);
      ranges.push({ start, end: start + e.blockCount * g.blockSizeBytes });
    }
    extentCount += extents.length;
    freeBlocks += agf.freeBlocks;
    counted += agf.freeBlocks + agf.flCount + agf.btreeBlocks;
  }
  let note = '';
  if (counted !== g.freeDataBlocks) {
    const what = `sb_fdblocks ${g.freeDataBlocks} but the AGFs count ${counted}`;
    if (!g.lazyCount) return untrusted(`xfs superblock: ${what} (counters are not lazy, so they must agree)`);
    note = `; lazy counters: ${what}, the AGFs are authoritative`;
  }
  return {
    trusted: true,
    free: ExtentSet.from(ranges),
    unitBytes: g.blockSizeBytes,
    counterFreeBytes: freeBlocks * g.blockSizeBytes,
    detail: `xfs v${g.version}, ${g.agCount} AGs, ${extentCount} free extents${note}`,
  };
}
