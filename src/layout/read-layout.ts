/**
 * Finds the partition table of a disk and lists its volumes: GPT (when the MBR has a
 * protective 0xEE entry), MBR with logical partitions, or none (the whole disk is one volume).
 */
import { ExtentSet } from '../disk/extent-set.js';
import type { BlockReader } from '../disk/types.js';
import { parseFatBootSector } from '../fs/fat/probe.js';
import { parseNtfsBootSector } from '../fs/ntfs/probe.js';
import { hasGptSignature, readGpt } from './gpt.js';
import {
  MBR_SECTOR_BYTES,
  MBR_TYPE_GPT_PROTECTIVE,
  hasMbrSignature,
  hasValidBootIndicators,
  isEmptyEntry,
  parseMbrEntries,
  readMbr,
} from './mbr.js';
import type { Layout, Volume } from './types.js';

/** The name libguestfs gives the first disk of an appliance. */
const DEFAULT_DISK_NAME = '/dev/sda';
/** Logical block sizes a GPT may use (UEFI 2.10 §5.3.1: LBA 1 is one logical block in). */
const GPT_SECTOR_SIZES = [512, 4096] as const;

/** Options for {@link readLayout}. */
export interface ReadLayoutOptions {
  /** Prefix of volume names; partitions append their number. */
  readonly diskName?: string;
}

function wholeDisk(reader: BlockReader, diskName: string, notes: string[]): Layout {
  const volume: Volume = { name: diskName, offsetBytes: 0, sizeBytes: reader.sizeBytes, kind: 'whole-disk' };
  return {
    table: 'none',
    diskSizeBytes: reader.sizeBytes,
    sectorSizeBytes: MBR_SECTOR_BYTES,
    volumes: [volume],
    notes,
    protectedRanges: ExtentSet.empty,
  };
}

async function hasSignatureAt(reader: BlockReader, offsetBytes: number, blockBytes: number): Promise<boolean> {
  if (offsetBytes < 0 || offsetBytes + blockBytes > reader.sizeBytes) return false;
  return hasGptSignature(await reader.read(offsetBytes, blockBytes));
}

/**
 * The logical block size of a GPT disk: where the primary header is, or, when its signature
 * is gone, where a backup header sits in the last block.
 */
async function gptSectorSize(reader: BlockReader): Promise<number> {
  for (const size of GPT_SECTOR_SIZES) if (await hasSignatureAt(reader, size, size)) return size;
  for (const size of GPT_SECTOR_SIZES) {
    const lastLbaOffset = (Math.floor(reader.sizeBytes / size) - 1) * size;
    if (await hasSignatureAt(reader, lastLbaOffset, size)) return size;
  }
  return MBR_SECTOR_BYTES;
}

/** What a 0x55AA sector 0 is when it is not a partition table, or undefined when it is one. */
function notATable(sector: Uint8Array): string | undefined {
  const fat = parseFatBootSector(sector);
  if (fat) return `sector 0 is a ${fat.fatType} boot sector, not a partition table: the whole disk is one volume`;
  if (parseNtfsBootSector(sector)) {
    return 'sector 0 is an NTFS boot sector, not a partition table: the whole disk is one volume';
  }
  if (!hasValidBootIndicators(parseMbrEntries(sector))) {
    return 'sector 0 has the 0x55AA signature but boot indicators other than 0x00/0x80: not a partition table';
  }
  return undefined;
}

/** Reads the partition table of a disk and returns its volumes in disk order. */
export async function readLayout(reader: BlockReader, options: ReadLayoutOptions = {}): Promise<Layout> {
  const diskName = options.diskName ?? DEFAULT_DISK_NAME;
  const notes: string[] = [];
  if (reader.sizeBytes < MBR_SECTOR_BYTES) return wholeDisk(reader, diskName, notes);
  const sector0 = await reader.read(0, MBR_SECTOR_BYTES);
  if (!hasMbrSignature(sector0)) {
    if (await hasSignatureAt(reader, MBR_SECTOR_BYTES, MBR_SECTOR_BYTES)) {
      notes.push('a GPT header at LBA 1 has no protective MBR: ignored, as Linux does');
    }
    return wholeDisk(reader, diskName, notes);
  }
  const entries = parseMbrEntries(sector0);
  if (entries.some((e) => e.type === MBR_TYPE_GPT_PROTECTIVE)) {
    if (entries.some((e) => !isEmptyEntry(e) && e.type !== MBR_TYPE_GPT_PROTECTIVE)) {
      notes.push('hybrid MBR: the GPT was used, as Linux does');
    }
    const sectorSizeBytes = await gptSectorSize(reader);
    const gpt = await readGpt(reader, sectorSizeBytes, diskName);
    notes.push(...gpt.notes);
    return {
      table: 'gpt',
      diskSizeBytes: reader.sizeBytes,
      sectorSizeBytes,
      volumes: gpt.volumes,
      notes,
      protectedRanges: gpt.structures,
    };
  }
  const why = notATable(sector0);
  if (why) return wholeDisk(reader, diskName, [why]);
  if (entries.every(isEmptyEntry)) {
    return wholeDisk(reader, diskName, ['the MBR has no partitions: the whole disk is one volume']);
  }
  const mbr = await readMbr(reader, sector0, diskName);
  notes.push(...mbr.notes);
  return {
    table: 'mbr',
    diskSizeBytes: reader.sizeBytes,
    sectorSizeBytes: MBR_SECTOR_BYTES,
    volumes: mbr.volumes,
    notes,
    protectedRanges: mbr.structures,
  };
}
