/**
 * FAT12/16/32 detection (Microsoft "FAT: General Overview of On-Disk Format", fatgen103, §3
 * "Boot Sector and BPB"). The pure boot-sector decoder also tells the layout reader that a
 * 0x55AA sector is a filesystem on the whole disk, not an MBR.
 */
import { isPowerOfTwo, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import type { Detected } from '../probe-common.js';
import type { ProbeResult } from '../types.js';

const BOOT_SECTOR_BYTES = 512;

/** fatgen103 §3.1–3.3 BPB field offsets (FAT12/16 and FAT32 extended parts). */
const BPB = {
  bytesPerSector: 11,
  sectorsPerCluster: 13,
  reservedSectors: 14,
  fatCount: 16,
  rootEntries: 17,
  totalSectors16: 19,
  media: 21,
  fatSectors16: 22,
  totalSectors32: 32,
  fatSectors32: 36,
  rootCluster32: 44,
} as const;
/** BS_BootSig, BS_VolID, BS_VolLab for FAT12/16 (§3.2) and FAT32 (§3.3). */
const EXT_BPB_16 = { bootSig: 38, volumeId: 39, label: 43 } as const;
const EXT_BPB_32 = { bootSig: 66, volumeId: 67, label: 71 } as const;
/** BS_BootSig values that say BS_VolID and BS_VolLab are present. */
const EXT_BOOT_SIGS = new Set([0x28, 0x29]);
const LABEL_BYTES = 11;
const NO_NAME = 'NO NAME';
/** fatgen103 §3.5: the FAT type is decided by the count of clusters, nothing else. */
const FAT12_MAX_CLUSTERS = 4084;
const FAT16_MAX_CLUSTERS = 65524;
const DIR_ENTRY_BYTES = 32;
/** §6: DIR_Attr at 11; ATTR_VOLUME_ID 0x08; long-name entries have all of 0x0F; 0xE5 is deleted. */
const ATTR_OFFSET = 11;
const ATTR_VOLUME_ID = 0x08;
const ATTR_LONG_NAME = 0x0f;
const DELETED = 0xe5;
/** Bounds on how much of the root directory we scan for the label entry. */
const MAX_ROOT_SCAN_BYTES = 64 * 1024;

/** The decoded geometry of a FAT boot sector. */
export interface FatBootSector {
  readonly fatType: 'FAT12' | 'FAT16' | 'FAT32';
  readonly bytesPerSector: number;
  readonly sectorsPerCluster: number;
  readonly reservedSectors: number;
  readonly fatCount: number;
  readonly fatSectors: number;
  readonly media: number;
  readonly rootDirSectors: number;
  readonly firstDataSector: number;
  readonly rootCluster: number;
  readonly volumeId?: number;
  readonly bootSectorLabel?: string;
}

function latin1Label(bytes: Uint8Array, offset: number): string {
  return new TextDecoder('latin1').decode(bytes.subarray(offset, offset + LABEL_BYTES)).replace(/[ \0]+$/, '');
}

/** BPB_BytsPerSec may only be 512, 1024, 2048 or 4096 (§3.1). */
const SECTOR_SIZES = [512, 1024, 2048, 4096];
/** BPB_Media: 0xF0 (removable) or 0xF8–0xFF (§3.1). */
const MEDIA_REMOVABLE = 0xf0;
const MEDIA_MIN_FIXED = 0xf8;

/** The common BPB fields (§3.1), with the 16- and 32-bit counts already merged. */
interface Bpb {
  readonly bytesPerSector: number;
  readonly sectorsPerCluster: number;
  readonly reservedSectors: number;
  readonly fatCount: number;
  readonly rootEntries: number;
  readonly totalSectors: number;
  readonly fatSectors: number;
  readonly media: number;
}

function readBpb(sector: Uint8Array): Bpb {
  const v = viewOf(sector);
  return {
    bytesPerSector: v.getUint16(BPB.bytesPerSector, true),
    sectorsPerCluster: sector[BPB.sectorsPerCluster]!,
    reservedSectors: v.getUint16(BPB.reservedSectors, true),
    fatCount: sector[BPB.fatCount]!,
    rootEntries: v.getUint16(BPB.rootEntries, true),
    totalSectors: v.getUint16(BPB.totalSectors16, true) || v.getUint32(BPB.totalSectors32, true),
    fatSectors: v.getUint16(BPB.fatSectors16, true) || v.getUint32(BPB.fatSectors32, true),
    media: sector[BPB.media]!,
  };
}

/** §3.1: jmpBoot is EB xx 90 or E9 xx xx, then each field within its allowed values. */
function bpbValid(sector: Uint8Array, b: Bpb): boolean {
  const jumpOk = (sector[0] === 0xeb && sector[2] === 0x90) || sector[0] === 0xe9;
  return (
    jumpOk &&
    SECTOR_SIZES.includes(b.bytesPerSector) &&
    isPowerOfTwo(b.sectorsPerCluster) &&
    b.reservedSectors > 0 &&
    b.fatCount > 0 &&
    (b.media === MEDIA_REMOVABLE || b.media >= MEDIA_MIN_FIXED) &&
    b.totalSectors > 0 &&
    b.fatSectors > 0
  );
}

function fatTypeOf(clusters: number): FatBootSector['fatType'] {
  if (clusters <= FAT12_MAX_CLUSTERS) return 'FAT12';
  return clusters <= FAT16_MAX_CLUSTERS ? 'FAT16' : 'FAT32';
}

/** Decodes a FAT boot sector by the BPB rules of fatgen103 §3; undefined when any check fails. */
export function parseFatBootSector(sector: Uint8Array): FatBootSector | undefined {
  if (sector.length < BOOT_SECTOR_BYTES) return undefined;
  const b = readBpb(sector);
  if (!bpbValid(sector, b)) return undefined;
  const rootDirSectors = Math.ceil((b.rootEntries * DIR_ENTRY_BYTES) / b.bytesPerSector);
  const firstDataSector = b.reservedSectors + b.fatCount * b.fatSectors + rootDirSectors;
  if (firstDataSector >= b.totalSectors) return undefined;
  const fatType = fatTypeOf(Math.floor((b.totalSectors - firstDataSector) / b.sectorsPerCluster));
  const v = viewOf(sector);
  // FAT32 has no fixed root directory and its FAT size lives only in BPB_FATSz32 (§3.3).
  const fat32 = fatType === 'FAT32';
  if (fat32 ? b.rootEntries !== 0 || v.getUint16(BPB.fatSectors16, true) !== 0 : b.rootEntries === 0) return undefined;
  const ext = fat32 ? EXT_BPB_32 : EXT_BPB_16;
  const hasIds = EXT_BOOT_SIGS.has(sector[ext.bootSig]!);
  const label = hasIds ? latin1Label(sector, ext.label) : '';
  return {
    fatType,
    bytesPerSector: b.bytesPerSector,
    sectorsPerCluster: b.sectorsPerCluster,
    reservedSectors: b.reservedSectors,
    fatCount: b.fatCount,
    fatSectors: b.fatSectors,
    media: b.media,
    rootDirSectors,
    firstDataSector,
    rootCluster: fat32 ? v.getUint32(BPB.rootCluster32, true) : 0,
    ...(hasIds ? { volumeId: v.getUint32(ext.volumeId, true) } : {}),
    ...(label && label !== NO_NAME ? { bootSectorLabel: label } : {}),
  };
}

/** The volume label entry of a root directory region, if any (§6, ATTR_VOLUME_ID). */
export function findFatLabelEntry(dir: Uint8Array): string | undefined {
  for (let at = 0; at + DIR_ENTRY_BYTES <= dir.length; at += DIR_ENTRY_BYTES) {
    const first = dir[at]!;
    if (first === 0) return undefined;
    const attr = dir[at + ATTR_OFFSET]!;
    if (first !== DELETED && (attr & ATTR_LONG_NAME) !== ATTR_LONG_NAME && attr & ATTR_VOLUME_ID) {
      const label = latin1Label(dir, at);
      return label || undefined;
    }
  }
  return undefined;
}

/** Where the root directory starts and how much of it to scan (FAT12/16 fixed, FAT32 first cluster). */
function rootDirRange(bs: FatBootSector): { offsetBytes: number; lengthBytes: number } {
  const sector =
    bs.fatType === 'FAT32'
      ? bs.firstDataSector + (bs.rootCluster - 2) * bs.sectorsPerCluster
      : bs.reservedSectors + bs.fatCount * bs.fatSectors;
  const sectors = bs.fatType === 'FAT32' ? bs.sectorsPerCluster : bs.rootDirSectors;
  return {
    offsetBytes: sector * bs.bytesPerSector,
    lengthBytes: Math.min(sectors * bs.bytesPerSector, MAX_ROOT_SCAN_BYTES),
  };
}

/** blkid prints the volume id as two groups of four upper-case hex digits. */
function volumeIdText(id: number): string {
  const hex = id.toString(16).toUpperCase().padStart(8, '0');
  return `${hex.slice(0, 4)}-${hex.slice(4)}`;
}

/** FAT12/16/32; the label comes from the root directory entry, as libblkid prefers, else the BPB. */
export async function detectVfat(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  const bs = parseFatBootSector(head);
  if (!bs) return undefined;
  const root = rootDirRange(bs);
  const rootFits =
    (bs.fatType !== 'FAT32' || bs.rootCluster >= 2) &&
    root.offsetBytes >= 0 &&
    root.offsetBytes + root.lengthBytes <= reader.sizeBytes;
  const dirLabel = rootFits ? findFatLabelEntry(await reader.read(root.offsetBytes, root.lengthBytes)) : undefined;
  const label = dirLabel ?? bs.bootSectorLabel;
  const result: ProbeResult = {
    type: 'vfat',
    blockSizeBytes: bs.bytesPerSector * bs.sectorsPerCluster,
    detail: bs.fatType,
    ...(bs.volumeId !== undefined ? { uuid: volumeIdText(bs.volumeId) } : {}),
    ...(label && label !== NO_NAME ? { label } : {}),
  };
  return { result, magicOffsetBytes: 0, confirm: () => fatTableLooksLive(reader, bs) };
}

/** §4: FAT[0] holds the media byte in its low 8 bits and all ones above it. */
async function fatTableLooksLive(reader: BlockReader, bs: FatBootSector): Promise<boolean> {
  const at = bs.reservedSectors * bs.bytesPerSector;
  if (at + 4 > reader.sizeBytes) return false;
  const fat = await reader.read(at, 4);
  if (fat[0] !== bs.media || fat[1] !== 0xff) return false;
  if (bs.fatType === 'FAT12') return true;
  return fat[2] === 0xff && (bs.fatType === 'FAT16' || (fat[3]! & 0x0f) === 0x0f);
}
