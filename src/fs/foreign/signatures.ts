/**
 * Filesystems sparsify has no driver for, known by their superblock signature alone, so that the
 * probe can name them and the appliance (whose kernel mounts them) can take them. Each entry is a
 * pure decoder of the few bytes that hold the magic, a sanity field or two and, where cheap, the
 * UUID and label; nothing here reads allocation structures.
 */
import { hasAscii, isPowerOfTwo, utf16le, uuidText, viewOf } from '../../binary/bytes.js';
import type { FsType, ProbeResult } from '../types.js';

/** One signature: where its superblock lies in the volume and how to decode it. */
export interface Signature {
  readonly type: FsType;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** Where the magic lies within the read bytes (for the probe's notes). */
  readonly magicOffsetBytes: number;
  readonly parse: (sb: Uint8Array) => ProbeResult | undefined;
}

const KiB = 1024;

/** Block sizes of the kind filesystems use: 512 B to 64 KiB. */
function plausibleBlock(bytes: number): boolean {
  return isPowerOfTwo(bytes) && bytes >= 512 && bytes <= 64 * KiB;
}

/** f2fs: include/linux/f2fs_fs.h, struct f2fs_super_block at 1 KiB (magic 0xF2F52010). */
function parseF2fs(sb: Uint8Array): ProbeResult | undefined {
  const v = viewOf(sb);
  if (v.getUint32(0, true) !== 0xf2f52010) return undefined;
  const logBlock = v.getUint32(16, true);
  if (logBlock < 9 || logBlock > 16) return undefined;
  const label = utf16le(sb, 124, 1024).replace(/\0.*$/s, '');
  return { type: 'f2fs', uuid: uuidText(sb, 108), blockSizeBytes: 2 ** logBlock, ...(label ? { label } : {}) };
}

/** exFAT: Microsoft exFAT specification §3.1, the main boot sector at byte 0. */
function parseExfat(sb: Uint8Array): ProbeResult | undefined {
  const v = viewOf(sb);
  if (!hasAscii(sb, 3, 'EXFAT   ') || v.getUint16(510, true) !== 0xaa55) return undefined;
  const sectorShift = sb[108]!;
  const clusterShift = sb[109]!;
  if (sectorShift < 9 || sectorShift > 12 || clusterShift > 25 - sectorShift) return undefined;
  const serial = v.getUint32(100, true).toString(16).toUpperCase().padStart(8, '0');
  return { type: 'exfat', uuid: `${serial.slice(0, 4)}-${serial.slice(4)}`, blockSizeBytes: 2 ** (sectorShift + clusterShift) };
}

/** JFS: jfs_superblock.h, the primary superblock at 32 KiB ("JFS1", s_bsize at 16). */
function parseJfs(sb: Uint8Array): ProbeResult | undefined {
  if (!hasAscii(sb, 0, 'JFS1')) return undefined;
  const blockSizeBytes = viewOf(sb).getUint32(16, true);
  return plausibleBlock(blockSizeBytes) ? { type: 'jfs', blockSizeBytes } : undefined;
}

/** HFS+ and HFSX: Apple TN1150, the volume header at 1 KiB ('H+' v4 or 'HX' v5, big-endian). */
function parseHfsPlus(sb: Uint8Array): ProbeResult | undefined {
  const v = viewOf(sb);
  const signature = v.getUint16(0, false);
  const version = v.getUint16(2, false);
  if (!((signature === 0x482b && version === 4) || (signature === 0x4858 && version === 5))) return undefined;
  const blockSizeBytes = v.getUint32(40, false);
  return plausibleBlock(blockSizeBytes) ? { type: 'hfsplus', blockSizeBytes, detail: signature === 0x4858 ? 'HFSX' : 'HFS+' } : undefined;
}

/** ReiserFS 3.5/3.6: struct reiserfs_super_block at 64 KiB (magic at 52, s_blocksize at 44). */
function parseReiserfs(sb: Uint8Array): ProbeResult | undefined {
  if (!['ReIsErFs', 'ReIsEr2Fs', 'ReIsEr3Fs'].some((m) => hasAscii(sb, 52, m))) return undefined;
  const blockSizeBytes = viewOf(sb).getUint16(44, true);
  return plausibleBlock(blockSizeBytes) ? { type: 'reiserfs', blockSizeBytes } : undefined;
}

/** NILFS2: include/uapi/linux/nilfs2_ondisk.h, struct nilfs_super_block at 1 KiB (magic 0x3434 at 6). */
function parseNilfs2(sb: Uint8Array): ProbeResult | undefined {
  const v = viewOf(sb);
  if (v.getUint16(6, true) !== 0x3434) return undefined;
  const logBlock = v.getUint32(24, true);
  return logBlock <= 6 ? { type: 'nilfs2', blockSizeBytes: KiB << logBlock } : undefined;
}

/** Every foreign signature, by where it lies. */
export const FOREIGN_SIGNATURES: readonly Signature[] = [
  { type: 'exfat', offsetBytes: 0, lengthBytes: 512, magicOffsetBytes: 3, parse: parseExfat },
  { type: 'f2fs', offsetBytes: KiB, lengthBytes: 1148, magicOffsetBytes: 0, parse: parseF2fs },
  { type: 'hfsplus', offsetBytes: KiB, lengthBytes: 512, magicOffsetBytes: 0, parse: parseHfsPlus },
  { type: 'nilfs2', offsetBytes: KiB, lengthBytes: 512, magicOffsetBytes: 6, parse: parseNilfs2 },
  { type: 'jfs', offsetBytes: 32 * KiB, lengthBytes: 512, magicOffsetBytes: 0, parse: parseJfs },
  { type: 'reiserfs', offsetBytes: 64 * KiB, lengthBytes: 512, magicOffsetBytes: 52, parse: parseReiserfs },
];

/** The types the foreign signatures report. */
export const FOREIGN_TYPES: readonly FsType[] = FOREIGN_SIGNATURES.map((s) => s.type);
