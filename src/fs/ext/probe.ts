/**
 * ext2/3/4 detection (kernel Documentation/filesystems/ext4/super.rst and group_descr.rst;
 * the ext2/ext3/ext4 split follows libblkid's ext.c).
 */
import { cString, uuidText, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { alwaysLive, fits, labelField, readAt, type Detected } from '../probe-common.js';
import type { ProbeResult } from '../types.js';

/** The superblock is 1024 bytes at byte 1024 whatever the block size. */
export const EXT_SUPERBLOCK_OFFSET = 1024;
const EXT_SUPERBLOCK_BYTES = 1024;
const EXT_MAGIC = 0xef53;
/** super.rst field offsets. */
const SB = {
  blocksCountLo: 0x4,
  firstDataBlock: 0x14,
  logBlockSize: 0x18,
  blocksPerGroup: 0x20,
  inodesPerGroup: 0x28,
  magic: 0x38,
  compat: 0x5c,
  incompat: 0x60,
  roCompat: 0x64,
  uuid: 0x68,
  volumeName: 0x78,
  descSize: 0xfe,
  blocksCountHi: 0x150,
} as const;
const VOLUME_NAME_BYTES = 16;
const COMPAT_HAS_JOURNAL = 0x4;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
/** sparse_super, large_file, btree_dir: the read-only features ext2 and ext3 know. */
const RO_COMPAT_EXT3_SUPP = 0x1 | 0x2 | 0x4;
/** What ext2 and ext3 understand (libblkid ext.c); any other feature makes it ext4. */
const INCOMPAT_EXT2_SUPP = INCOMPAT_FILETYPE | INCOMPAT_META_BG;
const INCOMPAT_EXT3_SUPP = INCOMPAT_EXT2_SUPP | INCOMPAT_RECOVER;
/** s_log_block_size: the block size is 1024 << n, at most 64 KiB. */
const MAX_LOG_BLOCK = 6;
/** group_descr.rst: 32-byte descriptors, or s_desc_size (≥ 64) with the 64bit feature. */
const DESC_32_BYTES = 32;
const DESC_64_BYTES = 64;
const DESC = { blockBitmap: [0x0, 0x20], inodeBitmap: [0x4, 0x24], inodeTable: [0x8, 0x28] } as const;

/** The fields of an ext superblock the probe and the clean check need. */
export interface ExtSuperblock {
  readonly type: 'ext2' | 'ext3' | 'ext4';
  readonly journalDevice: boolean;
  readonly needsRecovery: boolean;
  readonly blockSizeBytes: number;
  readonly blocksCount: number;
  readonly firstDataBlock: number;
  readonly descriptorBytes: number;
  readonly uuid: string;
  readonly label: string;
}

function extType(compat: number, incompat: number, roCompat: number): ExtSuperblock['type'] {
  if ((incompat & ~INCOMPAT_EXT3_SUPP) !== 0 || (roCompat & ~RO_COMPAT_EXT3_SUPP) !== 0) return 'ext4';
  if (compat & COMPAT_HAS_JOURNAL) return 'ext3';
  return (incompat & ~INCOMPAT_EXT2_SUPP) !== 0 ? 'ext4' : 'ext2';
}

/** Decodes the 1024-byte superblock; undefined without the magic or with impossible geometry. */
export function parseExtSuperblock(sb: Uint8Array): ExtSuperblock | undefined {
  if (sb.length < EXT_SUPERBLOCK_BYTES) return undefined;
  const v = viewOf(sb);
  const u32 = (offset: number): number => v.getUint32(offset, true);
  const logBlock = u32(SB.logBlockSize);
  if (v.getUint16(SB.magic, true) !== EXT_MAGIC || logBlock > MAX_LOG_BLOCK) return undefined;
  if (u32(SB.blocksPerGroup) === 0 || u32(SB.inodesPerGroup) === 0) return undefined;
  const incompat = u32(SB.incompat);
  const is64 = (incompat & INCOMPAT_64BIT) !== 0;
  const blocksCount = u32(SB.blocksCountLo) + (is64 ? u32(SB.blocksCountHi) * 2 ** 32 : 0);
  const firstDataBlock = u32(SB.firstDataBlock);
  if (blocksCount === 0 || firstDataBlock > 1) return undefined;
  return {
    type: extType(u32(SB.compat), incompat, u32(SB.roCompat)),
    journalDevice: (incompat & INCOMPAT_JOURNAL_DEV) !== 0,
    needsRecovery: (incompat & INCOMPAT_RECOVER) !== 0,
    blockSizeBytes: 1024 << logBlock,
    blocksCount,
    firstDataBlock,
    descriptorBytes: is64 ? Math.max(DESC_32_BYTES, v.getUint16(SB.descSize, true)) : DESC_32_BYTES,
    uuid: uuidText(sb, SB.uuid),
    label: cString(sb, SB.volumeName, VOLUME_NAME_BYTES),
  };
}

/** Whether group 0's descriptor puts its bitmaps and inode table inside the filesystem. */
function extDescriptorLooksLive(desc: Uint8Array, sb: ExtSuperblock): boolean {
  if (desc.length < DESC_32_BYTES) return false;
  const v = viewOf(desc);
  const wide = desc.length >= DESC_64_BYTES;
  const block = ([lo, hi]: readonly [number, number]): number =>
    v.getUint32(lo, true) + (wide ? v.getUint32(hi, true) * 2 ** 32 : 0);
  return [DESC.blockBitmap, DESC.inodeBitmap, DESC.inodeTable]
    .map(block)
    .every((b) => b > sb.firstDataBlock && b < sb.blocksCount);
}

/** ext2/3/4 by the magic at 1024 + 0x38; an external journal device is reported as unknown. */
export async function detectExt(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  if (!fits(reader, EXT_SUPERBLOCK_OFFSET, EXT_SUPERBLOCK_BYTES)) return undefined;
  const sb = parseExtSuperblock(await readAt(reader, head, EXT_SUPERBLOCK_OFFSET, EXT_SUPERBLOCK_BYTES));
  if (!sb) return undefined;
  const magicOffsetBytes = EXT_SUPERBLOCK_OFFSET + SB.magic;
  const common = { uuid: sb.uuid, blockSizeBytes: sb.blockSizeBytes, ...labelField(sb.label) };
  if (sb.journalDevice) {
    const result: ProbeResult = { type: 'unknown', ...common, detail: 'ext3/4 external journal device' };
    return { result, magicOffsetBytes, confirm: alwaysLive };
  }
  const result: ProbeResult = {
    type: sb.type,
    ...common,
    ...(sb.needsRecovery ? { detail: 'journal needs recovery', dirty: true } : {}),
  };
  // The descriptor table starts in the block after the superblock's (group_descr.rst).
  const gdtOffset = (sb.firstDataBlock + 1) * sb.blockSizeBytes;
  const confirm = async (): Promise<boolean> =>
    fits(reader, gdtOffset, sb.descriptorBytes) &&
    extDescriptorLooksLive(await reader.read(gdtOffset, sb.descriptorBytes), sb);
  return { result, magicOffsetBytes, confirm };
}
