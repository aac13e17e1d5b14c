/**
 * Detectors for btrfs, Linux swap and LUKS: a pure decoder of each header, and the
 * detector that reads it. ext2/3/4 is in ext/probe.ts, XFS in xfs/probe.ts.
 */
import type { BlockReader } from '../disk/types.js';
import { cString, hasAscii, isPowerOfTwo, u64le, uuidText, viewOf } from '../binary/bytes.js';
import { alwaysLive, fits, labelField, readAt, type Detected } from './probe-common.js';
import type { ProbeResult } from './types.js';

// btrfs: the primary superblock at 64 KiB (btrfs documentation, "On-disk format", superblock).
const BTRFS_SB_OFFSET = 65536;
const BTRFS_SB_READ_BYTES = 1024;
const BTRFS_MAGIC = '_BHRfS_M';
const BTRFS = { fsid: 0x20, bytenr: 0x30, magic: 0x40, sectorSize: 0x90, nodeSize: 0x94, label: 0x12b } as const;
const BTRFS_LABEL_BYTES = 256;

/** Decodes the primary btrfs superblock: magic, its own byte number, power-of-two sizes. */
export function parseBtrfsSuperblock(sb: Uint8Array): ProbeResult | undefined {
  if (sb.length < BTRFS_SB_READ_BYTES || !hasAscii(sb, BTRFS.magic, BTRFS_MAGIC)) return undefined;
  const v = viewOf(sb);
  const blockSizeBytes = v.getUint32(BTRFS.sectorSize, true);
  const selfOk = u64le(v, BTRFS.bytenr) === BTRFS_SB_OFFSET;
  if (!selfOk || !isPowerOfTwo(blockSizeBytes) || !isPowerOfTwo(v.getUint32(BTRFS.nodeSize, true))) return undefined;
  const label = cString(sb, BTRFS.label, BTRFS_LABEL_BYTES);
  return { type: 'btrfs', uuid: uuidText(sb, BTRFS.fsid), blockSizeBytes, ...labelField(label) };
}

/** btrfs by its primary superblock at 64 KiB. */
export async function detectBtrfs(reader: BlockReader): Promise<Detected | undefined> {
  if (!fits(reader, BTRFS_SB_OFFSET, BTRFS_SB_READ_BYTES)) return undefined;
  const result = parseBtrfsSuperblock(await reader.read(BTRFS_SB_OFFSET, BTRFS_SB_READ_BYTES));
  return result && { result, magicOffsetBytes: BTRFS_SB_OFFSET + BTRFS.magic, confirm: alwaysLive };
}

// Linux swap: include/linux/swap.h, union swap_header; the signature ends the first page.
const SWAP_PAGE_SIZES = [4096, 8192, 16384, 32768, 65536];
const SWAP_SIG_BYTES = 10;
const SWAP_V1 = 'SWAPSPACE2';
const SWAP_V0 = 'SWAP-SPACE';
/** Hibernation images replace the swap signature (libblkid swap.c, "swsuspend"). */
const HIBERNATION_SIGS = ['S1SUSPEND', 'S2SUSPEND', 'ULSUSPEND', 'LINHIB0001'];
const SWAP_HDR = { version: 1024, lastPage: 1028, uuid: 1036, label: 1052 } as const;
const SWAP_LABEL_BYTES = 16;
const SWAP_HDR_BYTES = SWAP_HDR.label + SWAP_LABEL_BYTES;

/** What a swap signature says, or undefined when `sig` is none of them. */
function swapKind(sig: Uint8Array): 'v1' | 'v0' | 'hibernated' | undefined {
  if (hasAscii(sig, 0, SWAP_V1)) return 'v1';
  if (hasAscii(sig, 0, SWAP_V0)) return 'v0';
  return HIBERNATION_SIGS.some((s) => hasAscii(sig, 0, s)) ? 'hibernated' : undefined;
}

/** A decoded v1 swap header. */
export interface SwapHeader {
  readonly result: ProbeResult;
  readonly version: number;
  readonly lastPage: number;
}

/** Decodes the v1 swap header (the first 1068 bytes) of a swap area with `pageBytes` pages. */
export function parseSwapHeader(hdr: Uint8Array, pageBytes: number, hibernated: boolean): SwapHeader {
  const v = viewOf(hdr);
  // The header is in the byte order of the machine that ran mkswap.
  const littleEndian = v.getUint32(SWAP_HDR.version, true) === 1;
  const result: ProbeResult = {
    type: 'swap',
    uuid: uuidText(hdr, SWAP_HDR.uuid),
    blockSizeBytes: pageBytes,
    ...labelField(cString(hdr, SWAP_HDR.label, SWAP_LABEL_BYTES)),
    ...(hibernated ? { detail: 'swap with hibernation image', hibernated: true } : {}),
  };
  const version = v.getUint32(SWAP_HDR.version, littleEndian);
  return { result, version, lastPage: v.getUint32(SWAP_HDR.lastPage, littleEndian) };
}

/** Swap (v1 with UUID and label, or v0), or a swap area holding a hibernation image. */
export async function detectSwap(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  for (const pageBytes of SWAP_PAGE_SIZES) {
    if (!fits(reader, 0, pageBytes)) return undefined;
    const magicOffsetBytes = pageBytes - SWAP_SIG_BYTES;
    const kind = swapKind(await readAt(reader, head, magicOffsetBytes, SWAP_SIG_BYTES));
    if (!kind) continue;
    if (kind === 'v0') {
      const result: ProbeResult = { type: 'swap', blockSizeBytes: pageBytes, detail: 'swap v0' };
      return { result, magicOffsetBytes, confirm: alwaysLive };
    }
    const hdr = await readAt(reader, head, 0, SWAP_HDR_BYTES);
    const { result, version, lastPage } = parseSwapHeader(hdr, pageBytes, kind === 'hibernated');
    const live = version === 1 && lastPage > 0 && lastPage * pageBytes < reader.sizeBytes;
    return { result, magicOffsetBytes, confirm: () => Promise.resolve(live) };
  }
  return undefined;
}

// LUKS: "LUKS On-Disk Format Specification" 1.2.3 and "LUKS2 On-Disk Format" (big-endian).
const LUKS_MAGIC = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]; // "LUKS\xba\xbe"
const LUKS = { version: 6, label2: 24, uuid: 168 } as const;
const LUKS_UUID_BYTES = 40;
const LUKS2_LABEL_BYTES = 48;
const LUKS_HDR_BYTES = 512;

/** Decodes a LUKS1 or LUKS2 binary header; undefined without the magic or with another version. */
export function parseLuksHeader(hdr: Uint8Array): ProbeResult | undefined {
  if (hdr.length < LUKS_HDR_BYTES || !LUKS_MAGIC.every((b, i) => hdr[i] === b)) return undefined;
  const version = viewOf(hdr).getUint16(LUKS.version, false);
  if (version !== 1 && version !== 2) return undefined;
  const uuid = cString(hdr, LUKS.uuid, LUKS_UUID_BYTES);
  const label = version === 2 ? cString(hdr, LUKS.label2, LUKS2_LABEL_BYTES) : '';
  return { type: 'luks', ...(uuid ? { uuid } : {}), ...labelField(label), detail: `LUKS${version}` };
}

/** LUKS1 or LUKS2 by its header at byte 0. */
export function detectLuks(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  const result = fits(reader, 0, LUKS_HDR_BYTES) ? parseLuksHeader(head) : undefined;
  return Promise.resolve(result && { result, magicOffsetBytes: 0, confirm: alwaysLive });
}
