/**
 * ext2/3/4 block group descriptors and the checksums that guard them and the block bitmaps
 * (kernel Documentation/filesystems/ext4/group_descr.rst, checksums.rst).
 */
import { viewOf } from '../../binary/bytes.js';
import { crc32cUpdate } from '../../binary/crc32.js';
import { SparsifyError } from '../../errors.js';
import { crc16Update, le32Bytes } from './checksum.js';
import type { ExtSuper } from './superblock.js';

/** group_descr.rst offsets: [low half, high half (64-byte descriptors only)]. */
const GD = {
  blockBitmap: [0x0, 0x20],
  inodeBitmap: [0x4, 0x24],
  inodeTable: [0x8, 0x28],
  freeBlocks: [0xc, 0x2c],
  flags: 0x12,
  blockBitmapCsum: [0x18, 0x38],
  checksum: 0x1e,
} as const;
/** The high halves exist when the descriptor is at least this long (EXT4_MIN_DESC_SIZE_64BIT). */
const WIDE_DESC_BYTES = 64;
const NARROW_DESC_BYTES = 32;
/** bg_block_bitmap_csum_hi is stored when s_desc_size reaches its end (EXT4_BG_BLOCK_BITMAP_CSUM_HI_END). */
const BITMAP_CSUM_HI_END = 0x3a;
/** bg_flags (group_descr.rst): the block bitmap is not initialized and must be computed. */
const BG_BLOCK_UNINIT = 0x2;

/** One decoded group descriptor; block numbers may exceed 2^53 in garbage and then fail every range check. */
export interface ExtGroupDescriptor {
  readonly blockBitmap: number;
  readonly inodeBitmap: number;
  readonly inodeTable: number;
  /** bg_free_blocks_count: free clusters in the group. */
  readonly freeClusters: number;
  readonly flags: number;
  readonly blockBitmapChecksum: number;
  readonly checksum: number;
}

/** Decodes a 32-byte or 64-and-more-byte group descriptor. */
export function parseGroupDescriptor(bytes: Uint8Array): ExtGroupDescriptor {
  if (bytes.length !== NARROW_DESC_BYTES && bytes.length < WIDE_DESC_BYTES) {
    throw new SparsifyError('BAD_IMAGE', `ext group descriptor of ${bytes.length} bytes: expected 32 or at least 64`);
  }
  const v = viewOf(bytes);
  const wide = bytes.length >= WIDE_DESC_BYTES;
  const u32 = ([lo, hi]: readonly [number, number]): number =>
    v.getUint32(lo, true) + (wide ? v.getUint32(hi, true) * 2 ** 32 : 0);
  const u16 = ([lo, hi]: readonly [number, number]): number =>
    v.getUint16(lo, true) + (wide ? v.getUint16(hi, true) * 2 ** 16 : 0);
  return {
    blockBitmap: u32(GD.blockBitmap),
    inodeBitmap: u32(GD.inodeBitmap),
    inodeTable: u32(GD.inodeTable),
    freeClusters: u16(GD.freeBlocks),
    flags: v.getUint16(GD.flags, true),
    blockBitmapChecksum: u16(GD.blockBitmapCsum),
    checksum: v.getUint16(GD.checksum, true),
  };
}

const ZERO_CHECKSUM_FIELD = new Uint8Array(2);

/**
 * The checksum descriptor `group` should carry (ext4_group_desc_csum): crc16 over uuid, group
 * and descriptor without its checksum field (gdt_csum), or the low 16 bits of crc32c over
 * group and descriptor with the field zeroed (metadata_csum); undefined without either feature.
 */
export function groupDescriptorChecksum(s: ExtSuper, group: number, bytes: Uint8Array): number | undefined {
  const head = bytes.subarray(0, GD.checksum);
  const tail = bytes.subarray(GD.checksum + 2);
  if (s.checksum === 'crc32c') {
    let crc = crc32cUpdate(s.checksumSeed, le32Bytes(group));
    crc = crc32cUpdate(crc, head);
    crc = crc32cUpdate(crc, ZERO_CHECKSUM_FIELD);
    return crc32cUpdate(crc, tail) & 0xffff;
  }
  if (s.checksum === 'crc16') {
    let crc = crc16Update(0xffff, s.uuid);
    crc = crc16Update(crc, le32Bytes(group));
    crc = crc16Update(crc, head);
    return crc16Update(crc, tail);
  }
  return undefined;
}

/** Whether a block bitmap matches its descriptor's crc32c (ext4_block_bitmap_csum_verify); true without one. */
export function blockBitmapChecksumOk(s: ExtSuper, d: ExtGroupDescriptor, bitmap: Uint8Array): boolean {
  if (s.checksum !== 'crc32c') return true;
  const crc = crc32cUpdate(s.checksumSeed, bitmap.subarray(0, s.clustersPerGroup / 8));
  const stored = d.blockBitmapChecksum;
  return s.descriptorBytes >= BITMAP_CSUM_HI_END ? crc === stored : (crc & 0xffff) === stored;
}

/** Whether the group's bitmap is computed, not read: the kernel honours BLOCK_UNINIT only with descriptor checksums. */
export function isBlockUninit(s: ExtSuper, d: ExtGroupDescriptor): boolean {
  return s.checksum !== 'none' && (d.flags & BG_BLOCK_UNINIT) !== 0;
}
