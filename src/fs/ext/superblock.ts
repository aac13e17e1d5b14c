/**
 * The ext2/3/4 superblock as the free-map reader needs it: geometry, features, state
 * (kernel Documentation/filesystems/ext4/super.rst, blockgroup.rst, bigalloc.rst).
 * probe.ts decodes the few fields the probe needs; this decoder is strict and throws
 * BAD_IMAGE for any value the kernel would refuse to mount.
 */
import { isPowerOfTwo, viewOf } from '../../binary/bytes.js';
import { crc32cUpdate } from '../../binary/crc32.js';
import { SparsifyError } from '../../errors.js';
import { EXT_SUPERBLOCK_OFFSET, parseExtSuperblock } from './probe.js';

/** super.rst: the superblock is 1024 bytes at byte 1024 whatever the block size. */
export const EXT_SUPERBLOCK_BYTES = 1024;

/** super.rst field offsets. */
const SB = {
  blocksCountLo: 0x4,
  freeBlocksLo: 0xc,
  firstDataBlock: 0x14,
  logBlockSize: 0x18,
  logClusterSize: 0x1c,
  blocksPerGroup: 0x20,
  clustersPerGroup: 0x24,
  inodesPerGroup: 0x28,
  state: 0x3a,
  revLevel: 0x4c,
  inodeSize: 0x58,
  compat: 0x5c,
  incompat: 0x60,
  roCompat: 0x64,
  uuid: 0x68,
  reservedGdtBlocks: 0xce,
  lastOrphan: 0xe8,
  descSize: 0xfe,
  firstMetaBg: 0x104,
  blocksCountHi: 0x150,
  freeBlocksHi: 0x158,
  mmpBlock: 0x168,
  checksumType: 0x175,
  backupBgs: 0x24c,
  checksumSeed: 0x270,
  checksum: 0x3fc,
} as const;

/** super.rst s_feature_compat / incompat / ro_compat bits this reader acts on. */
export const COMPAT = { sparseSuper2: 0x200 } as const;
export const INCOMPAT = {
  recover: 0x4,
  journalDev: 0x8,
  metaBg: 0x10,
  is64bit: 0x80,
  mmp: 0x100,
  flexBg: 0x200,
  csumSeed: 0x2000,
} as const;
export const RO_COMPAT = {
  sparseSuper: 0x1,
  gdtCsum: 0x10,
  bigalloc: 0x200,
  metadataCsum: 0x400,
  orphanPresent: 0x10000,
} as const;
/**
 * The incompat features the kernel mounts (EXT4_FEATURE_INCOMPAT_SUPP): filetype, recover,
 * meta_bg, extents, 64bit, mmp, flex_bg, ea_inode, csum_seed, largedir, inline_data, encrypt,
 * casefold. journal_dev is known but is not a filesystem. Compression and dirdata are not.
 */
export const KNOWN_INCOMPAT =
  0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
/**
 * The ro_compat features of EXT4_FEATURE_RO_COMPAT_SUPP plus readonly. Unknown ones matter here
 * (bigalloc itself is ro_compat: a newer one could change what a bitmap bit means); snapshots
 * (0x80), replicas (0x800) and shared_blocks (0x4000) are left out on purpose.
 */
export const KNOWN_RO_COMPAT =
  0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x8000 | 0x10000;

/** super.rst s_state bits. */
export const STATE = { validFs: 0x1, errorFs: 0x2, orphanFs: 0x4 } as const;
/** super.rst s_checksum_type: the only defined algorithm is crc32c. */
const CHECKSUM_TYPE_CRC32C = 1;
/** group_descr.rst: 32-byte descriptors without 64bit; with it s_desc_size, a power of two in [64, 1024]. */
const DESC_32_BYTES = 32;
const DESC_64_MIN_BYTES = 64;
const DESC_MAX_BYTES = 1024;
/** mke2fs's lower bound for s_blocks_per_group; a bitmap block holds at most 8 × block size bits. */
const MIN_BLOCKS_PER_GROUP = 256;
/** The kernel caps s_log_cluster_size so that a cluster is at most 2^30 bytes. */
const MAX_LOG_CLUSTER = 20;
/** Group numbers are 32-bit on disk (checksums hash them as __le32). */
const MAX_GROUPS = 2 ** 32;
/** s_rev_level 0 (EXT2_GOOD_OLD_REV) has 128-byte inodes and no s_inode_size field. */
const GOOD_OLD_INODE_BYTES = 128;

/** The geometry, features and state of one ext2/3/4 filesystem. Block numbers fit a double. */
export interface ExtSuper {
  readonly type: 'ext2' | 'ext3' | 'ext4';
  readonly blockSizeBytes: number;
  /** Blocks per cluster: 1 without bigalloc. */
  readonly clusterRatio: number;
  readonly blocksCount: number;
  /** s_free_blocks_count: in blocks, also with bigalloc (the kernel stores EXT4_C2B of its counter). */
  readonly freeBlocksCount: number;
  readonly firstDataBlock: number;
  readonly blocksPerGroup: number;
  /** Bits in use in each block bitmap. */
  readonly clustersPerGroup: number;
  readonly inodeTableBlocks: number;
  readonly groupCount: number;
  readonly descriptorBytes: number;
  readonly descriptorsPerBlock: number;
  /** s_gdb_count: blocks of the whole descriptor table. */
  readonly descriptorBlocks: number;
  readonly reservedGdtBlocks: number;
  readonly metaBg: boolean;
  readonly firstMetaBg: number;
  readonly flexBg: boolean;
  readonly sparseSuper: boolean;
  /** sparse_super2: the (at most two) groups holding backups; undefined without the feature. */
  readonly backupGroups: readonly number[] | undefined;
  readonly checksum: 'none' | 'crc16' | 'crc32c';
  /** The metadata_csum seed: s_checksum_seed with csum_seed, else crc32c(~0, uuid). */
  readonly checksumSeed: number;
  readonly uuid: Uint8Array;
  readonly state: number;
  readonly lastOrphan: number;
  readonly incompat: number;
  readonly roCompat: number;
  readonly checksumType: number;
  readonly mmpBlock: number;
}

function bad(what: string): SparsifyError {
  return new SparsifyError('BAD_IMAGE', `ext superblock at byte ${EXT_SUPERBLOCK_OFFSET}: ${what}`, {
    hint: 'the filesystem is damaged; run e2fsck on a copy, or name the volume with --ignore',
  });
}

interface Sizes {
  blockSizeBytes: number;
  clusterRatio: number;
  blocksPerGroup: number;
  clustersPerGroup: number;
}

/** Block and cluster sizes, and their group counts, checked as ext4_handle_clustersize does. */
function parseSizes(v: DataView, roCompat: number, blockSizeBytes: number): Sizes {
  const logBlock = v.getUint32(SB.logBlockSize, true);
  const logCluster = v.getUint32(SB.logClusterSize, true);
  const blocksPerGroup = v.getUint32(SB.blocksPerGroup, true);
  const bitsPerBitmap = 8 * blockSizeBytes;
  let clusterRatio = 1;
  let clustersPerGroup = blocksPerGroup;
  if (roCompat & RO_COMPAT.bigalloc) {
    if (logCluster < logBlock || logCluster > MAX_LOG_CLUSTER) throw bad(`s_log_cluster_size ${logCluster} is impossible`);
    clusterRatio = 2 ** (logCluster - logBlock);
    clustersPerGroup = v.getUint32(SB.clustersPerGroup, true);
    if (blocksPerGroup !== clustersPerGroup * clusterRatio) {
      throw bad(`s_blocks_per_group ${blocksPerGroup} is not s_clusters_per_group × cluster ratio`);
    }
  } else if (logCluster !== logBlock) {
    throw bad(`cluster size 2^${logCluster} KiB differs from block size without bigalloc`);
  }
  if (blocksPerGroup < MIN_BLOCKS_PER_GROUP || clustersPerGroup > bitsPerBitmap || clustersPerGroup % 8 !== 0) {
    throw bad(`s_blocks_per_group ${blocksPerGroup} is impossible for ${blockSizeBytes}-byte blocks`);
  }
  return { blockSizeBytes, clusterRatio, blocksPerGroup, clustersPerGroup };
}

/** Descriptor size: 32 bytes, or s_desc_size with 64bit (group_descr.rst, ext4_fill_super's check). */
function parseDescriptorBytes(v: DataView, incompat: number): number {
  if (!(incompat & INCOMPAT.is64bit)) return DESC_32_BYTES;
  const size = v.getUint16(SB.descSize, true);
  if (size < DESC_64_MIN_BYTES || size > DESC_MAX_BYTES || !isPowerOfTwo(size)) throw bad(`s_desc_size ${size} is impossible`);
  return size;
}

/** s_first_data_block is 1 with 1 KiB blocks (0 with bigalloc, which starts at cluster 0), else 0. */
function checkFirstDataBlock(firstDataBlock: number, sizes: Sizes): void {
  const expected = sizes.blockSizeBytes === 1024 && sizes.clusterRatio === 1 ? 1 : 0;
  if (firstDataBlock !== expected) throw bad(`s_first_data_block ${firstDataBlock} is impossible for this block size`);
}

function checksumKind(roCompat: number): ExtSuper['checksum'] {
  if (roCompat & RO_COMPAT.metadataCsum) return 'crc32c';
  return roCompat & RO_COMPAT.gdtCsum ? 'crc16' : 'none';
}

/** Decodes and checks the 1024-byte superblock; throws BAD_IMAGE on impossible geometry. */
export function parseExtSuper(sb: Uint8Array): ExtSuper {
  const probe = parseExtSuperblock(sb);
  if (!probe || probe.journalDevice) throw bad('no ext2/3/4 filesystem superblock (magic, block size or counts)');
  const v = viewOf(sb);
  const u32 = (offset: number): number => v.getUint32(offset, true);
  const incompat = u32(SB.incompat);
  const roCompat = u32(SB.roCompat);
  const is64 = (incompat & INCOMPAT.is64bit) !== 0;
  const sizes = parseSizes(v, roCompat, probe.blockSizeBytes);
  checkFirstDataBlock(probe.firstDataBlock, sizes);
  const blocksCount = probe.blocksCount;
  if (blocksCount <= probe.firstDataBlock) throw bad(`s_blocks_count ${blocksCount} is too small`);
  const freeBlocksCount = u32(SB.freeBlocksLo) + (is64 ? u32(SB.freeBlocksHi) * 2 ** 32 : 0);
  const inodesPerGroup = u32(SB.inodesPerGroup);
  const inodeBytes = u32(SB.revLevel) === 0 ? GOOD_OLD_INODE_BYTES : v.getUint16(SB.inodeSize, true);
  if (inodeBytes < GOOD_OLD_INODE_BYTES || inodeBytes > sizes.blockSizeBytes || !isPowerOfTwo(inodeBytes)) {
    throw bad(`s_inode_size ${inodeBytes} is impossible`);
  }
  if (inodesPerGroup > 8 * sizes.blockSizeBytes) throw bad(`s_inodes_per_group ${inodesPerGroup} is impossible`);
  const groupCount = Math.ceil((blocksCount - probe.firstDataBlock) / sizes.blocksPerGroup);
  if (groupCount > MAX_GROUPS) throw bad(`${groupCount} block groups is more than 2^32`);
  const descriptorBytes = parseDescriptorBytes(v, incompat);
  const descriptorsPerBlock = sizes.blockSizeBytes / descriptorBytes;
  const descriptorBlocks = Math.ceil(groupCount / descriptorsPerBlock);
  const reservedGdtBlocks = v.getUint16(SB.reservedGdtBlocks, true);
  // ext4_fill_super: "Number of reserved GDT blocks insanely large".
  if (reservedGdtBlocks > sizes.blockSizeBytes / 4) {
    throw bad(`s_reserved_gdt_blocks ${reservedGdtBlocks} is impossible`);
  }
  const metaBg = (incompat & INCOMPAT.metaBg) !== 0;
  const firstMetaBg = metaBg ? u32(SB.firstMetaBg) : 0;
  if (firstMetaBg > descriptorBlocks) {
    throw bad(`s_first_meta_bg ${firstMetaBg} is beyond ${descriptorBlocks} descriptor blocks`);
  }
  const uuid = sb.slice(SB.uuid, SB.uuid + 16);
  return {
    type: probe.type,
    ...sizes,
    blocksCount,
    freeBlocksCount,
    firstDataBlock: probe.firstDataBlock,
    inodeTableBlocks: Math.ceil((inodesPerGroup * inodeBytes) / sizes.blockSizeBytes),
    groupCount,
    descriptorBytes,
    descriptorsPerBlock,
    descriptorBlocks,
    reservedGdtBlocks,
    metaBg,
    firstMetaBg,
    flexBg: (incompat & INCOMPAT.flexBg) !== 0,
    sparseSuper: (roCompat & RO_COMPAT.sparseSuper) !== 0,
    backupGroups: u32(SB.compat) & COMPAT.sparseSuper2 ? [u32(SB.backupBgs), u32(SB.backupBgs + 4)] : undefined,
    checksum: checksumKind(roCompat),
    checksumSeed: incompat & INCOMPAT.csumSeed ? u32(SB.checksumSeed) : crc32cUpdate(0xffffffff, uuid),
    uuid,
    state: v.getUint16(SB.state, true),
    lastOrphan: u32(SB.lastOrphan),
    incompat,
    roCompat,
    checksumType: sb[SB.checksumType]!,
    mmpBlock: Number(v.getBigUint64(SB.mmpBlock, true)),
  };
}

/** Whether the superblock's own crc32c (metadata_csum) matches: ext4_superblock_csum. */
function extSuperChecksumOk(sb: Uint8Array): boolean {
  const stored = viewOf(sb).getUint32(SB.checksum, true);
  return crc32cUpdate(0xffffffff, sb.subarray(0, SB.checksum)) === stored;
}

/**
 * Why the superblock alone forbids trusting the bitmaps, or undefined. Each rule is a state in
 * which the on-disk bitmaps may not be what the filesystem will say once mounted.
 */
export function extSuperDistrust(s: ExtSuper, raw: Uint8Array): string | undefined {
  const hex = (n: number): string => `0x${n.toString(16)}`;
  const unknownIncompat = s.incompat & ~KNOWN_INCOMPAT;
  const unknownRoCompat = s.roCompat & ~KNOWN_RO_COMPAT;
  if (unknownIncompat) return `unknown incompat features ${hex(unknownIncompat)}`;
  if (unknownRoCompat) return `unknown ro_compat features ${hex(unknownRoCompat)}`;
  if (s.checksum === 'crc32c' && s.checksumType !== CHECKSUM_TYPE_CRC32C) {
    return `unknown metadata checksum type ${s.checksumType}`;
  }
  if (s.checksum === 'crc32c' && !extSuperChecksumOk(raw)) return 'superblock checksum mismatch';
  if (s.incompat & INCOMPAT.recover) return 'the journal needs recovery (needs_recovery is set)';
  if (s.state & STATE.errorFs) return `the filesystem has errors (s_state ${hex(s.state)}); run e2fsck`;
  if (s.state & STATE.orphanFs) return `orphan inodes are being recovered (s_state ${hex(s.state)})`;
  if (!(s.state & STATE.validFs)) return `not cleanly unmounted (s_state ${hex(s.state)})`;
  if (s.lastOrphan !== 0) return `orphan inode list pending (s_last_orphan ${s.lastOrphan})`;
  if (s.roCompat & RO_COMPAT.orphanPresent) return 'the orphan file may hold entries (orphan_present is set)';
  return undefined;
}
