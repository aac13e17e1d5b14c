/** The XFS detector: a pure decoder of the primary superblock, and the detector that reads it. */
import { cString, hasAscii, isPowerOfTwo, u64be, uuidText, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { fits, labelField, type Detected } from '../probe-common.js';
import type { ProbeResult } from '../types.js';

// XFS: "XFS Algorithms & Data Structures", chapter "Allocation Groups", Superblocks (big-endian).
const XFS_MAGIC = 'XFSB';
const XFS = { blockSize: 4, dblocks: 8, uuid: 32, agBlocks: 84, agCount: 88, versionNum: 100 } as const;
const XFS_MORE = { sectSize: 102, fname: 108, blockLog: 120, sectLog: 121 } as const;
const XFS_SB_BYTES = 512;
const XFS_VERSION_MASK = 0xf;
const XFS_FNAME_BYTES = 12;
/** Block sizes 512 B–64 KiB and sector sizes 512 B–32 KiB, each with its log2 stored beside it. */
const XFS_MIN_BYTES = 512;
const XFS_MAX_BLOCK_BYTES = 65536;
const XFS_MAX_SECTOR_BYTES = 32768;

function xfsSizeOk(bytes: number, log: number, maxBytes: number): boolean {
  return isPowerOfTwo(bytes) && 2 ** log === bytes && bytes >= XFS_MIN_BYTES && bytes <= maxBytes;
}

/** A primary XFS superblock's identity and geometry. */
export interface XfsSuperblock {
  readonly version: 4 | 5;
  readonly blockSizeBytes: number;
  readonly sectorSizeBytes: number;
  readonly uuid: string;
  readonly label: string;
}

/** Decodes sector 0 of an XFS volume; undefined without "XFSB" or with impossible geometry. */
export function parseXfsSuperblock(sb: Uint8Array): XfsSuperblock | undefined {
  if (sb.length < XFS_SB_BYTES || !hasAscii(sb, 0, XFS_MAGIC)) return undefined;
  const v = viewOf(sb);
  const blockSizeBytes = v.getUint32(XFS.blockSize, false);
  const sectorSizeBytes = v.getUint16(XFS_MORE.sectSize, false);
  const version = v.getUint16(XFS.versionNum, false) & XFS_VERSION_MASK;
  if (version !== 4 && version !== 5) return undefined;
  const sane =
    xfsSizeOk(blockSizeBytes, sb[XFS_MORE.blockLog]!, XFS_MAX_BLOCK_BYTES) &&
    xfsSizeOk(sectorSizeBytes, sb[XFS_MORE.sectLog]!, XFS_MAX_SECTOR_BYTES) &&
    v.getUint32(XFS.agCount, false) > 0 &&
    v.getUint32(XFS.agBlocks, false) > 0 &&
    u64be(v, XFS.dblocks) > 0;
  if (!sane) return undefined;
  const uuid = uuidText(sb, XFS.uuid);
  return { version, blockSizeBytes, sectorSizeBytes, uuid, label: cString(sb, XFS_MORE.fname, XFS_FNAME_BYTES) };
}

/** XFS; confirmed live when AG 0's AGF and AGI headers follow in sectors 1 and 2. */
export async function detectXfs(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  const sb = fits(reader, 0, XFS_SB_BYTES) ? parseXfsSuperblock(head) : undefined;
  if (!sb) return undefined;
  const result: ProbeResult = {
    type: 'xfs',
    uuid: sb.uuid,
    blockSizeBytes: sb.blockSizeBytes,
    detail: `xfs v${sb.version}`,
    ...labelField(sb.label),
  };
  const sector = sb.sectorSizeBytes;
  const confirm = async (): Promise<boolean> =>
    fits(reader, 0, 3 * sector) &&
    hasAscii(await reader.read(sector, 4), 0, 'XAGF') &&
    hasAscii(await reader.read(2 * sector, 4), 0, 'XAGI');
  return { result, magicOffsetBytes: 0, confirm };
}
