/** The btrfs detector: a pure decoder of the primary superblock, and the detector that reads it. */
import { cString, hasAscii, isPowerOfTwo, u64le, uuidText, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { alwaysLive, fits, labelField, type Detected } from '../probe-common.js';
import type { ProbeResult } from '../types.js';

// The primary superblock at 64 KiB (btrfs documentation, "On-disk format", superblock).
const BTRFS_SB_OFFSET = 65536;
const BTRFS_SB_READ_BYTES = 1024;
const BTRFS_MAGIC = '_BHRfS_M';
const BTRFS = { fsid: 0x20, bytenr: 0x30, magic: 0x40, numDevices: 0x88, sectorSize: 0x90, nodeSize: 0x94, label: 0x12b } as const;
const BTRFS_LABEL_BYTES = 256;

/** Decodes the primary btrfs superblock: magic, its own byte number, power-of-two sizes. */
export function parseBtrfsSuperblock(sb: Uint8Array): ProbeResult | undefined {
  if (sb.length < BTRFS_SB_READ_BYTES || !hasAscii(sb, BTRFS.magic, BTRFS_MAGIC)) return undefined;
  const v = viewOf(sb);
  const blockSizeBytes = v.getUint32(BTRFS.sectorSize, true);
  const selfOk = u64le(v, BTRFS.bytenr) === BTRFS_SB_OFFSET;
  if (!selfOk || !isPowerOfTwo(blockSizeBytes) || !isPowerOfTwo(v.getUint32(BTRFS.nodeSize, true))) return undefined;
  const label = cString(sb, BTRFS.label, BTRFS_LABEL_BYTES);
  const devices = u64le(v, BTRFS.numDevices);
  return { type: 'btrfs', uuid: uuidText(sb, BTRFS.fsid), blockSizeBytes, ...labelField(label), ...(devices > 1 ? { devices } : {}) };
}

/** btrfs by its primary superblock at 64 KiB. */
export async function detectBtrfs(reader: BlockReader): Promise<Detected | undefined> {
  if (!fits(reader, BTRFS_SB_OFFSET, BTRFS_SB_READ_BYTES)) return undefined;
  const result = parseBtrfsSuperblock(await reader.read(BTRFS_SB_OFFSET, BTRFS_SB_READ_BYTES));
  return result && { result, magicOffsetBytes: BTRFS_SB_OFFSET + BTRFS.magic, confirm: alwaysLive };
}
