/**
 * The AG free-space header (AGF) and AG free list (AGFL) of one allocation group. "XFS Algorithms &
 * Data Structures", "AG Free Space Management"; libxfs/xfs_format.h, struct xfs_agf and struct
 * xfs_agfl; the checks follow xfs_agf_verify and xfs_agfl_verify in libxfs/xfs_alloc.c.
 */
import { viewOf } from '../../binary/bytes.js';
import { crcMatches, damage, NULL_AGBLOCK, sameUuid } from './common.js';
import { agLengthBlocks, type XfsGeometry } from './superblock.js';

const AGF_MAGIC = 0x58414746; // "XAGF"
const AGF_VERSION = 1;
/** Field offsets in struct xfs_agf; index 0 of agf_roots/agf_levels is the by-block (bno) tree. */
const AGF = {
  magic: 0,
  versionnum: 4,
  seqno: 8,
  length: 12,
  bnoRoot: 16,
  bnoLevel: 28,
  flfirst: 40,
  fllast: 44,
  flcount: 48,
  freeblks: 52,
  longest: 56,
  btreeblks: 60,
  uuid: 64,
  crc: 216,
} as const;
const AGF_V5_MIN_BYTES = AGF.crc + 4;
const AGF_V4_MIN_BYTES = AGF.btreeblks + 4;

const AGFL_MAGIC = 0x5841464c; // "XAFL"
/** struct xfs_agfl (packed): magic, seqno, uuid, lsn, crc; then agfl_bno[]. v4 AGFLs have no header. */
const AGFL = { magic: 0, seqno: 4, uuid: 8, crc: 32 } as const;
const AGFL_V5_HEADER_BYTES = 36;
const AGBLOCK_BYTES = 4;
const UUID_BYTES = 16;

/** The sectors of an AG's header, from its start: SB 0, AGF 1, AGI 2, AGFL 3 (XFS_AGF_DADDR…). */
export const AGF_SECTOR = 1;
export const AGFL_SECTOR = 3;

/** The AGF fields the free-map reader uses; counts in filesystem blocks. */
export interface XfsAgf {
  readonly lengthBlocks: number;
  readonly bnoRoot: number;
  readonly bnoLevels: number;
  readonly flFirst: number;
  readonly flLast: number;
  readonly flCount: number;
  readonly freeBlocks: number;
  readonly longestFree: number;
  readonly btreeBlocks: number;
}

/** Slots in the AGFL sector (XFS_AGFL_SIZE): v5 steals 36 bytes for its header. */
function agflSlots(g: XfsGeometry): number {
  return (g.sectorSizeBytes - (g.version === 5 ? AGFL_V5_HEADER_BYTES : 0)) / AGBLOCK_BYTES;
}

/** The first AG block after the AG headers (XFS_BNO_BLOCK = XFS_AGFL_BLOCK + 1): no free extent or tree block lies below it. */
export function firstDataAgbno(g: XfsGeometry): number {
  return Math.floor(((AGFL_SECTOR + 1) * g.sectorSizeBytes - 1) / g.blockSizeBytes) + 1;
}

/** Decodes and checks the AGF sector of AG `agno`; throws XfsDamage naming the field. */
export function parseXfsAgf(bytes: Uint8Array, g: XfsGeometry, agno: number, maxLevels: number): XfsAgf {
  const where = `AG ${agno} AGF`;
  if (bytes.length < (g.version === 5 ? AGF_V5_MIN_BYTES : AGF_V4_MIN_BYTES)) damage(where, `only ${bytes.length} bytes`);
  const v = viewOf(bytes);
  if (v.getUint32(AGF.magic) !== AGF_MAGIC) damage(where, 'bad magic (not "XAGF")');
  if (g.version === 5) {
    if (!crcMatches(bytes, AGF.crc)) damage(where, 'CRC mismatch');
    if (!sameUuid(bytes.subarray(AGF.uuid, AGF.uuid + UUID_BYTES), g.metadataUuid)) damage(where, 'UUID is not the filesystem’s');
  }
  if (v.getUint32(AGF.versionnum) !== AGF_VERSION) damage(where, `unknown version ${v.getUint32(AGF.versionnum)}`);
  if (v.getUint32(AGF.seqno) !== agno) damage(where, `sequence number ${v.getUint32(AGF.seqno)}`);
  const agf: XfsAgf = {
    lengthBlocks: v.getUint32(AGF.length),
    bnoRoot: v.getUint32(AGF.bnoRoot),
    bnoLevels: v.getUint32(AGF.bnoLevel),
    flFirst: v.getUint32(AGF.flfirst),
    flLast: v.getUint32(AGF.fllast),
    flCount: v.getUint32(AGF.flcount),
    freeBlocks: v.getUint32(AGF.freeblks),
    longestFree: v.getUint32(AGF.longest),
    btreeBlocks: v.getUint32(AGF.btreeblks),
  };
  checkAgf(agf, g, agno, maxLevels);
  return agf;
}

function checkAgf(agf: XfsAgf, g: XfsGeometry, agno: number, maxLevels: number): void {
  const where = `AG ${agno} AGF`;
  const length = agLengthBlocks(g, agno);
  if (agf.lengthBlocks !== length) damage(where, `agf_length ${agf.lengthBlocks}, the superblock says ${length}`);
  const slots = agflSlots(g);
  if (agf.flFirst >= slots || agf.flLast >= slots || agf.flCount > slots) {
    damage(where, `free list indices ${agf.flFirst}..${agf.flLast} (${agf.flCount}) outside its ${slots} slots`);
  }
  if (agf.freeBlocks > length || agf.longestFree > agf.freeBlocks) {
    damage(where, `agf_freeblks ${agf.freeBlocks} / agf_longest ${agf.longestFree} impossible in ${length} blocks`);
  }
  if (agf.btreeBlocks > length) damage(where, `agf_btreeblks ${agf.btreeBlocks} exceeds the AG`);
  if (agf.bnoLevels < 1 || agf.bnoLevels > maxLevels) damage(where, `bnobt has ${agf.bnoLevels} levels (1..${maxLevels})`);
  if (agf.bnoRoot < firstDataAgbno(g) || agf.bnoRoot >= length) damage(where, `bnobt root ${agf.bnoRoot} outside the AG`);
}

/**
 * The blocks on the AG free list: flcount slots from flfirst, wrapping (xfs_agfl_walk). A count
 * that disagrees with flfirst..fllast is what xfs_agfl_needs_reset repairs at mount: refused.
 */
export function parseXfsAgfl(bytes: Uint8Array, g: XfsGeometry, agno: number, agf: XfsAgf): number[] {
  const where = `AG ${agno} AGFL`;
  if (bytes.length < g.sectorSizeBytes) damage(where, `only ${bytes.length} bytes`);
  const v = viewOf(bytes);
  let base = 0;
  if (g.version === 5) {
    if (v.getUint32(AGFL.magic) !== AGFL_MAGIC) damage(where, 'bad magic (not "XAFL")');
    if (!crcMatches(bytes.subarray(0, g.sectorSizeBytes), AGFL.crc)) damage(where, 'CRC mismatch');
    if (!sameUuid(bytes.subarray(AGFL.uuid, AGFL.uuid + UUID_BYTES), g.metadataUuid)) damage(where, 'UUID is not the filesystem’s');
    if (v.getUint32(AGFL.seqno) !== agno) damage(where, `sequence number ${v.getUint32(AGFL.seqno)}`);
    base = AGFL_V5_HEADER_BYTES;
  }
  const slots = agflSlots(g);
  const active = agf.flCount === 0 ? 0 : ((agf.flLast - agf.flFirst + slots) % slots) + 1;
  if (active !== agf.flCount) {
    damage(where, `agf_flcount ${agf.flCount} disagrees with slots ${agf.flFirst}..${agf.flLast} (the free list needs a reset)`);
  }
  const blocks: number[] = [];
  for (let i = 0; i < agf.flCount; i++) {
    const slot = (agf.flFirst + i) % slots;
    const agbno = v.getUint32(base + slot * AGBLOCK_BYTES);
    if (agbno === NULL_AGBLOCK || agbno < firstDataAgbno(g) || agbno >= agf.lengthBlocks) {
      damage(where, `slot ${slot} holds block ${agbno}, outside the AG`);
    }
    blocks.push(agbno);
  }
  return blocks;
}
