/**
 * The XFS primary superblock as the free-map reader needs it: geometry (which must be sane, or
 * the volume is not an XFS we can read: BAD_IMAGE) and the features and flags that decide whether
 * its free-space B+trees may be trusted. "XFS Algorithms & Data Structures", "Superblocks";
 * libxfs/xfs_format.h, struct xfs_dsb (big-endian; sb_crc little-endian).
 */
import { isPowerOfTwo, u64be, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { SparsifyError } from '../../errors.js';
import { parseXfsSuperblock } from './probe.js';
import { crcMatches } from './common.js';

/** Field offsets in struct xfs_dsb. */
const SB = {
  dblocks: 8,
  rblocks: 16,
  uuid: 32,
  logstart: 48,
  agblocks: 84,
  agcount: 88,
  logblocks: 96,
  versionnum: 100,
  sectsize: 102,
  agblklog: 124,
  inprogress: 126,
  fdblocks: 144,
  features2: 200,
  featuresRoCompat: 212,
  featuresIncompat: 216,
  featuresLogIncompat: 220,
  crc: 224,
  metaUuid: 248,
} as const;
const UUID_BYTES = 16;
/** sb_meta_uuid ends the v5 fields this reader uses. */
const SB_V5_MIN_BYTES = SB.metaUuid + UUID_BYTES;

/** sb_versionnum bits (XFS_SB_VERSION_*). */
const VERSION_NUMBITS = 0x000f;
const VERSION_SHAREDBIT = 0x0200; // unsupported by Linux: XFS_SB_VERSION_OKBITS leaves it out
const VERSION_LOGV2BIT = 0x0400;
const VERSION_DIRV2BIT = 0x2000; // Linux reads only v4 filesystems with v2 directories
const VERSION_MOREBITSBIT = 0x8000;
/** sb_features2 bits Linux accepts on v4 (XFS_SB_VERSION2_OKBITS): lazy counts, attr2, projid32, ftype. */
const V2_LAZYSBCOUNTBIT = 0x0002;
const V2_OKBITS = 0x0002 | 0x0008 | 0x0080 | 0x0200;

/** v5 incompat bits (XFS_SB_FEAT_INCOMPAT_*) that change nothing the AG free-space trees say. */
const INCOMPAT = {
  FTYPE: 1 << 0,
  SPINODES: 1 << 1,
  META_UUID: 1 << 2,
  BIGTIME: 1 << 3,
  NEEDSREPAIR: 1 << 4,
  NREXT64: 1 << 5,
  EXCHRANGE: 1 << 6,
  PARENT: 1 << 7,
} as const;
const INCOMPAT_UNDERSTOOD =
  INCOMPAT.FTYPE | INCOMPAT.SPINODES | INCOMPAT.META_UUID | INCOMPAT.BIGTIME | INCOMPAT.NREXT64 | INCOMPAT.EXCHRANGE | INCOMPAT.PARENT;
/** v5 ro_compat bits: finobt, rmapbt, reflink, inobtcount. Their blocks are all allocated through the bnobt. */
const RO_COMPAT_KNOWN = 0xf;
/** v5 log_incompat bits: LOG_XATTRS (bit 0) changes log items, not the record framing read here. */
const LOG_INCOMPAT_KNOWN = 0x1;

/** XFS_MIN_AG_BLOCKS, and XFS_MAX_AG_BYTES (1 TiB) from xfs_format.h. */
const MIN_AG_BLOCKS = 64;
const MAX_AG_BYTES = 2 ** 40;
/** Sector sizes 512 B–32 KiB (XFS_MIN/MAX_SECTORSIZE). */
const MIN_SECTOR_BYTES = 512;
const MAX_SECTOR_BYTES = 32768;

/** The superblock fields and derived geometry the free-map reader uses. Counts are in filesystem blocks. */
export interface XfsGeometry {
  readonly version: 4 | 5;
  readonly blockSizeBytes: number;
  readonly sectorSizeBytes: number;
  readonly dataBlocks: number;
  readonly realtimeBlocks: number;
  readonly agBlocks: number;
  readonly agCount: number;
  readonly agBlockLog: number;
  /** sb_uuid, which log record headers carry. */
  readonly uuid: Uint8Array;
  /** The UUID stamped into v5 metadata: sb_meta_uuid with the META_UUID feature, else sb_uuid. */
  readonly metadataUuid: Uint8Array;
  /** sb_logstart as an FSB (agno << agblklog | agbno); 0 means an external log device. */
  readonly logStartFsb: number;
  readonly logBlocks: number;
  /** Version 2 log records (v5, or v4 with LOGV2BIT). */
  readonly logV2: boolean;
  readonly inProgress: boolean;
  /** sb_fdblocks: free blocks, lazily written when `lazyCount`. */
  readonly freeDataBlocks: number;
  /** Lazy superblock counters: sb_fdblocks is exact only after a clean unmount; the AGFs are authoritative. */
  readonly lazyCount: boolean;
  readonly versionNum: number;
  readonly features2: number;
  readonly roCompat: number;
  readonly incompat: number;
  readonly logIncompat: number;
}

function badSuperblock(what: string): never {
  throw new SparsifyError('BAD_IMAGE', `xfs superblock: ${what}`, { hint: 'this volume is not a readable XFS filesystem' });
}

/** sb_sectsize of a sector that starts with an XFS superblock; BAD_IMAGE when it is not one. */
export function parseXfsSectorSize(head: Uint8Array): number {
  if (head.length < MIN_SECTOR_BYTES) badSuperblock(`only ${head.length} bytes`);
  const v = viewOf(head);
  if (v.getUint32(0, false) !== 0x58465342) badSuperblock('bad magic (not "XFSB")');
  const sectorBytes = v.getUint16(SB.sectsize, false);
  if (!isPowerOfTwo(sectorBytes) || sectorBytes < MIN_SECTOR_BYTES || sectorBytes > MAX_SECTOR_BYTES) {
    badSuperblock(`impossible sector size ${sectorBytes}`);
  }
  return sectorBytes;
}

/** Reads the primary superblock's whole sector; BAD_IMAGE when sector 0 is not an XFS superblock. */
export async function readXfsSuperblockSector(reader: BlockReader): Promise<Uint8Array> {
  if (reader.sizeBytes < MIN_SECTOR_BYTES) badSuperblock(`a ${reader.sizeBytes}-byte volume`);
  const head = await reader.read(0, MIN_SECTOR_BYTES);
  const sectorBytes = parseXfsSectorSize(head);
  if (sectorBytes > reader.sizeBytes) badSuperblock(`${sectorBytes}-byte sectors on a smaller volume`);
  return sectorBytes === MIN_SECTOR_BYTES ? head : reader.read(0, sectorBytes);
}

/** Whether a superblock sector belongs to a v5 (CRC) filesystem. */
export function isXfsV5(sb: Uint8Array): boolean {
  return sb.length >= SB_V5_MIN_BYTES && (viewOf(sb).getUint16(SB.versionnum, false) & VERSION_NUMBITS) === 5;
}

/** Whether the v5 superblock CRC (over the whole sector, xfs_sb_read_verify) matches. */
export function xfsSuperblockCrcOk(sb: Uint8Array): boolean {
  return crcMatches(sb, SB.crc);
}

/** Decodes the primary superblock sector; BAD_IMAGE when its geometry is impossible. */
export function parseXfsGeometry(sb: Uint8Array): XfsGeometry {
  const basic = parseXfsSuperblock(sb);
  if (!basic) badSuperblock('bad magic, version or block/sector size');
  const v = viewOf(sb);
  const version = basic.version;
  if (version === 5 && sb.length < SB_V5_MIN_BYTES) badSuperblock(`only ${sb.length} bytes of a v5 superblock`);
  const versionNum = v.getUint16(SB.versionnum, false);
  const features2 = versionNum & VERSION_MOREBITSBIT || version === 5 ? v.getUint32(SB.features2, false) : 0;
  const uuid = sb.slice(SB.uuid, SB.uuid + UUID_BYTES);
  const incompat = version === 5 ? v.getUint32(SB.featuresIncompat, false) : 0;
  const geometry: XfsGeometry = {
    version,
    blockSizeBytes: basic.blockSizeBytes,
    sectorSizeBytes: basic.sectorSizeBytes,
    dataBlocks: u64be(v, SB.dblocks),
    realtimeBlocks: u64be(v, SB.rblocks),
    agBlocks: v.getUint32(SB.agblocks, false),
    agCount: v.getUint32(SB.agcount, false),
    agBlockLog: sb[SB.agblklog]!,
    uuid,
    metadataUuid: incompat & INCOMPAT.META_UUID ? sb.slice(SB.metaUuid, SB.metaUuid + UUID_BYTES) : uuid,
    logStartFsb: u64be(v, SB.logstart),
    logBlocks: v.getUint32(SB.logblocks, false),
    logV2: version === 5 || (versionNum & VERSION_LOGV2BIT) !== 0,
    inProgress: sb[SB.inprogress] !== 0,
    freeDataBlocks: u64be(v, SB.fdblocks),
    lazyCount: version === 5 || (features2 & V2_LAZYSBCOUNTBIT) !== 0,
    versionNum,
    features2,
    roCompat: version === 5 ? v.getUint32(SB.featuresRoCompat, false) : 0,
    incompat,
    logIncompat: version === 5 ? v.getUint32(SB.featuresLogIncompat, false) : 0,
  };
  checkGeometry(geometry);
  return geometry;
}

/** The checks of xfs_validate_sb_common that the AG arithmetic relies on. */
function checkGeometry(g: XfsGeometry): void {
  if (g.blockSizeBytes < g.sectorSizeBytes) badSuperblock(`block size ${g.blockSizeBytes} is below the sector size ${g.sectorSizeBytes}`);
  if (g.agBlocks < MIN_AG_BLOCKS || g.agBlocks * g.blockSizeBytes > MAX_AG_BYTES) {
    badSuperblock(`impossible AG size of ${g.agBlocks} blocks`);
  }
  if (g.agBlockLog !== Math.ceil(Math.log2(g.agBlocks))) badSuperblock(`sb_agblklog ${g.agBlockLog} does not fit ${g.agBlocks}-block AGs`);
  const fullAgs = (g.agCount - 1) * g.agBlocks;
  if (!Number.isSafeInteger(g.dataBlocks) || g.dataBlocks <= fullAgs || g.dataBlocks > fullAgs + g.agBlocks) {
    badSuperblock(`${g.dataBlocks} data blocks do not fit ${g.agCount} AGs of ${g.agBlocks} blocks`);
  }
}

/** The length in blocks of AG `agno`: sb_agblocks, except the last, which holds the rest. */
export function agLengthBlocks(g: XfsGeometry, agno: number): number {
  return agno < g.agCount - 1 ? g.agBlocks : g.dataBlocks - (g.agCount - 1) * g.agBlocks;
}

/** Byte offset in the volume of block `agbno` of AG `agno` (AGs are sb_agblocks apart). */
export function agBlockOffsetBytes(g: XfsGeometry, agno: number, agbno: number): number {
  return (agno * g.agBlocks + agbno) * g.blockSizeBytes;
}

/** Why the superblock forbids trusting the free-space trees, or undefined. */
export function superblockRefusal(g: XfsGeometry, volumeBytes: number): string | undefined {
  if (g.inProgress) return 'xfs superblock: sb_inprogress is set (mkfs did not finish)';
  if (g.dataBlocks * g.blockSizeBytes > volumeBytes) {
    return `xfs superblock: the filesystem (${g.dataBlocks * g.blockSizeBytes} bytes) is larger than its ${volumeBytes}-byte volume`;
  }
  if (g.realtimeBlocks !== 0) return 'xfs has a realtime device, whose free space this reader does not map';
  return g.version === 4 ? v4FeatureRefusal(g) : v5FeatureRefusal(g);
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function v4FeatureRefusal(g: XfsGeometry): string | undefined {
  if (g.versionNum & VERSION_SHAREDBIT) return 'xfs v4 with the shared-superblock bit, which Linux does not support';
  if (!(g.versionNum & VERSION_DIRV2BIT)) return 'xfs v4 without v2 directories, which Linux does not support';
  const unknown = g.features2 & ~V2_OKBITS;
  return unknown ? `xfs v4 with unknown sb_features2 bits ${hex(unknown)}` : undefined;
}

function v5FeatureRefusal(g: XfsGeometry): string | undefined {
  if (g.incompat & INCOMPAT.NEEDSREPAIR) return 'xfs superblock says the filesystem needs xfs_repair (NEEDSREPAIR)';
  const unknownIncompat = g.incompat & ~INCOMPAT_UNDERSTOOD;
  if (unknownIncompat) return `xfs has incompatible features this reader does not know (${hex(unknownIncompat)})`;
  const unknownRo = g.roCompat & ~RO_COMPAT_KNOWN;
  if (unknownRo) return `xfs has read-only-compatible features this reader does not know (${hex(unknownRo)})`;
  const unknownLog = g.logIncompat & ~LOG_INCOMPAT_KNOWN;
  if (unknownLog) return `xfs has log-incompatible features this reader does not know (${hex(unknownLog)})`;
  return undefined;
}
