/**
 * Reads one AG's by-block free-space B+tree level by level, from the AGF's root down to the
 * leaves. Bounded: a level must be exactly one below its parent, the depth is at most what the
 * geometry allows, and a block reached twice (a loop or a shared child) is damage. Each level's
 * blocks must also chain left to right through their sibling pointers, as XFS keeps them.
 */
import type { BlockReader } from '../../disk/types.js';
import type { XfsAgf } from './ag.js';
import { parseXfsAllocBlock, type AllocBtreeShape, type XfsAllocBlock, type XfsFreeExtent } from './btree.js';
import { damage, NULL_AGBLOCK } from './common.js';
import { agBlockOffsetBytes, type XfsGeometry } from './superblock.js';

/** Blocks of one level read at once (NBD keeps many requests in flight). */
const READS_IN_FLIGHT = 16;

/** What the walk of one AG's bnobt found. */
export interface BnobtContents {
  /** Free extents in block order, non-overlapping. */
  readonly extents: readonly XfsFreeExtent[];
  /** The tree's own blocks, which must not be free. */
  readonly treeBlocks: readonly number[];
}

/** Walks AG `agno`'s bnobt; throws XfsDamage on any inconsistency. */
export async function readBnobt(
  reader: BlockReader,
  g: XfsGeometry,
  shape: AllocBtreeShape,
  agno: number,
  agf: XfsAgf,
): Promise<BnobtContents> {
  const visited = new Set<number>([agf.bnoRoot]);
  let agbnos = [agf.bnoRoot];
  for (let level = agf.bnoLevels - 1; ; level--) {
    const blocks = await readLevel(reader, g, shape, agno, agf, agbnos, level);
    checkSiblings(agno, agbnos, blocks);
    if (level === 0) {
      const rootIsLeaf = agf.bnoLevels === 1;
      return { extents: leafExtents(agno, agbnos, blocks, rootIsLeaf), treeBlocks: [...visited] };
    }
    const next: number[] = [];
    for (const [i, block] of blocks.entries()) {
      for (const child of block.children) {
        if (visited.has(child)) damage(`AG ${agno} bnobt block ${agbnos[i]}`, `child ${child} is reached twice (a loop)`);
        visited.add(child);
        next.push(child);
      }
    }
    agbnos = next;
  }
}

async function readLevel(
  reader: BlockReader,
  g: XfsGeometry,
  shape: AllocBtreeShape,
  agno: number,
  agf: XfsAgf,
  agbnos: readonly number[],
  level: number,
): Promise<XfsAllocBlock[]> {
  const blocks: XfsAllocBlock[] = [];
  for (let i = 0; i < agbnos.length; i += READS_IN_FLIGHT) {
    const batch = agbnos.slice(i, i + READS_IN_FLIGHT).map(async (agbno) => {
      const bytes = await reader.read(agBlockOffsetBytes(g, agno, agbno), g.blockSizeBytes);
      return parseXfsAllocBlock(bytes, g, shape, { agno, agbno, agLengthBlocks: agf.lengthBlocks, level });
    });
    blocks.push(...(await Promise.all(batch)));
  }
  return blocks;
}

/** Each block's siblings must be its neighbours on the level (NULLAGBLOCK at both ends). */
function checkSiblings(agno: number, agbnos: readonly number[], blocks: readonly XfsAllocBlock[]): void {
  for (const [i, block] of blocks.entries()) {
    const left = i === 0 ? NULL_AGBLOCK : agbnos[i - 1];
    const right = i === blocks.length - 1 ? NULL_AGBLOCK : agbnos[i + 1];
    if (block.leftSibling !== left || block.rightSibling !== right) {
      damage(`AG ${agno} bnobt block ${agbnos[i]}`, `sibling pointers ${block.leftSibling}/${block.rightSibling} disagree with the tree`);
    }
  }
}

/** The leaves' records in order; only a lone root leaf may be empty (an AG with no free space). */
function leafExtents(agno: number, agbnos: readonly number[], leaves: readonly XfsAllocBlock[], rootIsLeaf: boolean): XfsFreeExtent[] {
  const extents: XfsFreeExtent[] = [];
  let previousEnd = 0;
  for (const [i, leaf] of leaves.entries()) {
    if (leaf.records.length === 0 && !rootIsLeaf) damage(`AG ${agno} bnobt block ${agbnos[i]}`, 'empty leaf');
    for (const record of leaf.records) {
      if (record.startBlock < previousEnd) {
        damage(`AG ${agno} bnobt block ${agbnos[i]}`, `extent ${record.startBlock}+${record.blockCount} is out of order or overlaps`);
      }
      previousEnd = record.startBlock + record.blockCount;
      extents.push(record);
    }
  }
  return extents;
}
