/**
 * The map engine's ext2/3/4 reader: which blocks of a clean ext filesystem are free, from its
 * own superblock, group descriptors and block bitmaps, never its data blocks (kernel
 * Documentation/filesystems/ext4/*.rst).
 *
 * Outcomes:
 * - a decoding error (a structure that cannot be: impossible geometry, a descriptor pointing
 *   outside the filesystem, a read outside the volume) throws SparsifyError BAD_IMAGE naming the
 *   structure and its byte offset;
 * - a filesystem that decodes but whose bitmaps may not be the truth returns
 *   `{trusted: false, reason}`: needs_recovery, s_state not VALID or with ERROR_FS/ORPHAN_FS, an
 *   orphan list or orphan_present, unknown incompat/ro_compat features, a superblock, descriptor
 *   or bitmap checksum failure, a bitmap that marks metadata free, a bitmap population unequal
 *   to its descriptor's free count, the groups' sum unequal to s_free_blocks_count, a
 *   filesystem larger than its volume, MMP saying another node or fsck holds it.
 *
 * Which counter is authoritative: the bitmaps, checked against each descriptor's count exactly.
 * The superblock's count must equal their sum too. The kernel keeps it only in memory while
 * mounted but writes the exact sum at unmount and remount-ro (ext4_commit_super), and e2fsck
 * fixes it, so on a cleanly unmounted filesystem they agree; a mismatch means the image was not
 * taken from one, and we refuse rather than guess.
 */
import { viewOf } from '../../binary/bytes.js';
import { ExtentSet } from '../../disk/extent-set.js';
import type { BlockReader } from '../../disk/types.js';
import { SparsifyError } from '../../errors.js';
import { groupDescriptorChecksum, parseGroupDescriptor, type ExtGroupDescriptor } from './descriptor.js';
import { scanGroups } from './groups.js';
import { readChecked, visitBlocks } from './io.js';
import { descriptorBlock, descriptorPlacementProblem, groupClusterCount } from './layout.js';
import { metadataBlocks } from './metadata.js';
import { EXT_SUPERBLOCK_BYTES, INCOMPAT, extSuperDistrust, parseExtSuper, type ExtSuper } from './superblock.js';
import { EXT_SUPERBLOCK_OFFSET } from './probe.js';
import type { FreeMap } from '../types.js';

/** mmp.rst: mmp_magic and mmp_seq; EXT4_MMP_SEQ_CLEAN (fs/ext4/ext4.h) when nobody holds it. */
const MMP_MAGIC = 0x004d4d50;
const MMP_SEQ_CLEAN = 0xff4d4d50;
const MMP_HEADER_BYTES = 8;

function untrusted(s: ExtSuper, reason: string): FreeMap {
  return { trusted: false, reason: `${s.type}: ${reason}` };
}

function volumeDistrust(s: ExtSuper, reader: BlockReader): string | undefined {
  const fsBytes = s.blocksCount * s.blockSizeBytes;
  if (fsBytes <= reader.sizeBytes) return undefined;
  return `the filesystem (${fsBytes} bytes) is larger than its ${reader.sizeBytes}-byte volume; truncated image?`;
}

/** MMP (mmp.rst): trusted only when the sequence says the last holder left cleanly. */
async function readMmpDistrust(reader: BlockReader, s: ExtSuper): Promise<string | undefined> {
  if (!(s.incompat & INCOMPAT.mmp)) return undefined;
  if (s.mmpBlock <= s.firstDataBlock || s.mmpBlock >= s.blocksCount) {
    return `MMP block ${s.mmpBlock} is outside the filesystem`;
  }
  const v = viewOf(await readChecked(reader, s.mmpBlock * s.blockSizeBytes, MMP_HEADER_BYTES, 'ext MMP block'));
  if (v.getUint32(0, true) !== MMP_MAGIC) return `MMP block ${s.mmpBlock} has no MMP magic`;
  const seq = v.getUint32(4, true);
  if (seq !== MMP_SEQ_CLEAN) return `in use by another node or by fsck (MMP sequence 0x${seq.toString(16)})`;
  return undefined;
}

function badDescriptor(s: ExtSuper, group: number, offsetBytes: number, what: string): SparsifyError {
  return new SparsifyError('BAD_IMAGE', `${s.type} group descriptor ${group} at byte ${offsetBytes}: ${what}`, {
    hint: 'the filesystem is damaged; run e2fsck on a copy, or name the volume with --ignore',
  });
}

/** Decodes and checks one descriptor; a checksum failure is a reason to distrust, bad placement throws. */
function takeDescriptor(
  s: ExtSuper,
  group: number,
  bytes: Uint8Array,
  offsetBytes: number,
): ExtGroupDescriptor | string {
  const d = parseGroupDescriptor(bytes);
  const expected = groupDescriptorChecksum(s, group, bytes);
  if (expected !== undefined && expected !== d.checksum) {
    return `group descriptor ${group} at byte ${offsetBytes}: checksum mismatch`;
  }
  const problem = descriptorPlacementProblem(s, group, d);
  if (problem) throw badDescriptor(s, group, offsetBytes, problem);
  if (d.freeClusters > groupClusterCount(s, group)) {
    throw badDescriptor(s, group, offsetBytes, `${d.freeClusters} free clusters in a group of ${groupClusterCount(s, group)}`);
  }
  return d;
}

/** Reads the whole descriptor table (all meta groups' blocks with meta_bg), or why it is not trusted. */
async function readDescriptors(reader: BlockReader, s: ExtSuper): Promise<ExtGroupDescriptor[] | string> {
  const blocks = Array.from({ length: s.descriptorBlocks }, (_, i) => descriptorBlock(s, i));
  const indexOf = new Map(blocks.map((block, i) => [block, i]));
  blocks.forEach((block, i) => {
    if (block >= s.blocksCount) {
      throw badDescriptor(s, i * s.descriptorsPerBlock, block * s.blockSizeBytes, 'beyond the filesystem');
    }
  });
  if (indexOf.size !== blocks.length) throw badDescriptor(s, 0, EXT_SUPERBLOCK_OFFSET, 'descriptor blocks overlap');
  const descriptors: ExtGroupDescriptor[] = new Array<ExtGroupDescriptor>(s.groupCount);
  const reason = await visitBlocks(reader, s.blockSizeBytes, blocks, 'ext group descriptor table', (block, bytes) => {
    const firstGroup = indexOf.get(block)! * s.descriptorsPerBlock;
    const count = Math.min(s.descriptorsPerBlock, s.groupCount - firstGroup);
    for (let k = 0; k < count; k++) {
      const at = k * s.descriptorBytes;
      const offsetBytes = block * s.blockSizeBytes + at;
      const d = takeDescriptor(s, firstGroup + k, bytes.subarray(at, at + s.descriptorBytes), offsetBytes);
      if (typeof d === 'string') return d;
      descriptors[firstGroup + k] = d;
    }
    return undefined;
  });
  return reason ?? descriptors;
}

function detailOf(s: ExtSuper, uninitGroups: number): string {
  const cluster = s.clusterRatio > 1 ? `, ${s.blockSizeBytes * s.clusterRatio}-byte clusters` : '';
  return `${s.type}, ${s.blockSizeBytes}-byte blocks${cluster}, ${s.groupCount} groups (${uninitGroups} BLOCK_UNINIT)`;
}

/** Reads the free map of the ext2/3/4 filesystem that fills (or starts) `reader`'s volume. */
export async function readExtFreeMap(reader: BlockReader): Promise<FreeMap> {
  const raw = await readChecked(reader, EXT_SUPERBLOCK_OFFSET, EXT_SUPERBLOCK_BYTES, 'ext superblock');
  const s = parseExtSuper(raw);
  const early = extSuperDistrust(s, raw) ?? volumeDistrust(s, reader) ?? (await readMmpDistrust(reader, s));
  if (early) return untrusted(s, early);
  const descriptors = await readDescriptors(reader, s);
  if (typeof descriptors === 'string') return untrusted(s, descriptors);
  const scan = await scanGroups(reader, s, descriptors, metadataBlocks(s, descriptors));
  if (!scan.ok) return untrusted(s, scan.reason);
  const groupsFreeBlocks = scan.freeClusters * s.clusterRatio;
  if (groupsFreeBlocks !== s.freeBlocksCount) {
    return untrusted(s, `the groups have ${groupsFreeBlocks} free blocks, the superblock says ${s.freeBlocksCount}`);
  }
  return {
    trusted: true,
    free: ExtentSet.from(scan.free).clip(s.blocksCount * s.blockSizeBytes),
    unitBytes: s.blockSizeBytes * s.clusterRatio,
    counterFreeBytes: s.freeBlocksCount * s.blockSizeBytes,
    detail: detailOf(s, scan.uninitGroups),
  };
}
