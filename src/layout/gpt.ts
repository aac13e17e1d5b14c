/**
 * GUID Partition Table (UEFI Specification 2.10, §5.3 "GUID Partition Table (GPT) Disk Layout").
 * Pure decoders over one header sector and one entry array, and `readGpt` which picks the
 * primary copy or, when it is damaged, the backup at the last LBA.
 */
import { guidText, hasAscii, u64le, viewOf } from '../binary/bytes.js';
import { crc32 } from '../binary/crc32.js';
import { ExtentSet, type Range } from '../disk/extent-set.js';
import type { BlockReader } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { refused, type Verdict } from '../util/verdict.js';
import { checkGptEntries, gptEntryArrayProblem, MIN_ENTRY_BYTES, parseGptEntries, type GptEntry } from './gpt-entries.js';
import type { Volume } from './types.js';

export type { GptEntry } from './gpt-entries.js';

/** §5.3.2 Table 5-5, offset 0: the ASCII signature "EFI PART". */
const GPT_SIGNATURE = 'EFI PART';
/** §5.3.2: the primary header is at LBA 1; the backup is at the last LBA of the disk. */
const GPT_PRIMARY_LBA = 1;
/** §5.3.2 Table 5-5 field offsets (the shrink's table rewriter writes the same fields). */
export const HDR = {
  revision: 8,
  headerSize: 12,
  headerCrc: 16,
  reserved: 20,
  myLba: 24,
  alternateLba: 32,
  firstUsableLba: 40,
  lastUsableLba: 48,
  diskGuid: 56,
  entriesLba: 72,
  entryCount: 80,
  entrySize: 84,
  entriesCrc: 88,
} as const;
/** §5.3.2: HeaderSize is at least 92 bytes and at most the logical block size. */
const MIN_HEADER_BYTES = 92;
/** §5.3.2: Revision 1.0 is 0x00010000; minor revisions stay compatible. */
const REVISION_MAJOR = 1;
/** §5.3.2: SizeOfPartitionEntry is 128 × 2^n; we accept any multiple of 8 from 128 up. */
const ENTRY_SIZE_ALIGN = 8;
/** Our bound on the entry array (the spec's minimum is 16 KiB; tools write 16 KiB). */
const MAX_ENTRY_ARRAY_BYTES = 1 << 20;

/** A GPT header (§5.3.2) that passed every check. */
export interface GptHeader {
  readonly myLba: number;
  readonly alternateLba: number;
  readonly firstUsableLba: number;
  readonly lastUsableLba: number;
  readonly diskGuid: string;
  readonly entriesLba: number;
  readonly entryCount: number;
  readonly entrySizeBytes: number;
  readonly entriesCrc32: number;
}


/** A decoded header, or why this copy cannot be used. */
export type GptHeaderCheck = Verdict<{ header: GptHeader }>;

/** Whether a sector begins with the GPT signature. */
export function hasGptSignature(sector: Uint8Array): boolean {
  return hasAscii(sector, 0, GPT_SIGNATURE);
}

/** Decodes and validates the header in `sector` read from `atLba` of a disk of `diskLbas` blocks. */
export function parseGptHeader(sector: Uint8Array, atLba: number, diskLbas: number): GptHeaderCheck {
  if (sector.length < MIN_HEADER_BYTES) return refused('sector too short');
  if (!hasGptSignature(sector)) return refused(`no "${GPT_SIGNATURE}" signature`);
  const view = viewOf(sector);
  const headerSize = view.getUint32(HDR.headerSize, true);
  if (headerSize < MIN_HEADER_BYTES || headerSize > sector.length) {
    return refused(`header size ${headerSize} out of bounds`);
  }
  // A copy, not a view: Buffer.slice would share memory and zero the CRC field of the caller's sector.
  const copy = new Uint8Array(sector.subarray(0, headerSize));
  copy.fill(0, HDR.headerCrc, HDR.headerCrc + 4);
  if (crc32(copy) !== view.getUint32(HDR.headerCrc, true)) return refused('CRC mismatch');
  const revision = view.getUint32(HDR.revision, true);
  if (revision >>> 16 !== REVISION_MAJOR) return refused(`unsupported revision 0x${revision.toString(16)}`);
  const header: GptHeader = {
    myLba: u64le(view, HDR.myLba),
    alternateLba: u64le(view, HDR.alternateLba),
    firstUsableLba: u64le(view, HDR.firstUsableLba),
    lastUsableLba: u64le(view, HDR.lastUsableLba),
    diskGuid: guidText(sector, HDR.diskGuid),
    entriesLba: u64le(view, HDR.entriesLba),
    entryCount: view.getUint32(HDR.entryCount, true),
    entrySizeBytes: view.getUint32(HDR.entrySize, true),
    entriesCrc32: view.getUint32(HDR.entriesCrc, true),
  };
  const reason = headerFieldProblem(header, atLba, diskLbas, sector.length);
  return reason ? refused(reason) : { ok: true, header };
}

function headerFieldProblem(h: GptHeader, atLba: number, diskLbas: number, sectorBytes: number): string | undefined {
  if (h.myLba !== atLba) return `MyLBA is ${h.myLba}, expected ${atLba}`;
  if (h.firstUsableLba > h.lastUsableLba) {
    return `first usable LBA ${h.firstUsableLba} is after the last ${h.lastUsableLba}`;
  }
  if (h.lastUsableLba >= diskLbas) {
    return `last usable LBA ${h.lastUsableLba} is beyond the disk's last LBA ${diskLbas - 1} (truncated image?)`;
  }
  if (h.entrySizeBytes < MIN_ENTRY_BYTES || h.entrySizeBytes % ENTRY_SIZE_ALIGN !== 0) {
    return `partition entry size ${h.entrySizeBytes} is invalid`;
  }
  const arrayBytes = h.entryCount * h.entrySizeBytes;
  if (arrayBytes > MAX_ENTRY_ARRAY_BYTES) {
    return `${h.entryCount} partition entries of ${h.entrySizeBytes} bytes is too many`;
  }
  const arrayEndLba = h.entriesLba + entryArraySectors(h, sectorBytes);
  if (arrayEndLba > diskLbas) return `partition entry array at LBA ${h.entriesLba} runs past the end of the disk`;
  // An array over the usable LBAs is valid for Linux (block/partitions/efi.c does not check it):
  // it is read, noted, and protected from the volume pass like every other structure.
  if (arrayBytes > 0 && h.entriesLba <= atLba && atLba < arrayEndLba) {
    return `partition entry array at LBA ${h.entriesLba} overlaps the header`;
  }
  return undefined;
}

/** Logical blocks the entry array of `h` occupies. */
function entryArraySectors(h: GptHeader, sectorBytes: number): number {
  return Math.ceil((h.entryCount * h.entrySizeBytes) / sectorBytes);
}

/** Whether the entry array of `h` lies (partly) inside its own usable LBAs. */
function arrayInUsableLbas(h: GptHeader, sectorBytes: number): boolean {
  const endLba = h.entriesLba + entryArraySectors(h, sectorBytes);
  return endLba > h.entriesLba && h.entriesLba <= h.lastUsableLba && endLba > h.firstUsableLba;
}


/** One usable copy of the GPT: its header and used entries. */
interface GptCopy {
  readonly header: GptHeader;
  readonly entries: GptEntry[];
}

/** A copy read at `lba`: usable, or why not (with its header when only the entry array is bad). */
type CopyRead = { lba: number; header?: GptHeader } & Verdict<{ copy: GptCopy }>;

async function readGptCopy(reader: BlockReader, lba: number, sectorBytes: number): Promise<CopyRead> {
  const diskLbas = Math.floor(reader.sizeBytes / sectorBytes);
  if (lba < 0 || lba >= diskLbas) return { lba, ...refused('beyond the end of the disk') };
  const checked = parseGptHeader(await reader.read(lba * sectorBytes, sectorBytes), lba, diskLbas);
  if (!checked.ok) return { lba, ...checked };
  const { header } = checked;
  const array = await reader.read(header.entriesLba * sectorBytes, header.entryCount * header.entrySizeBytes);
  const problem = gptEntryArrayProblem(array, header);
  if (problem) return { lba, header, ...refused(problem) };
  return { lba, ok: true, copy: { header, entries: parseGptEntries(array, header) } };
}

/** The disk bytes a copy occupies: its header's block when on the disk, its entry array when decoded. */
function copyRanges(read: CopyRead, sectorBytes: number, diskLbas: number): Range[] {
  if (read.lba < 0 || read.lba >= diskLbas) return [];
  const ranges: Range[] = [{ start: read.lba * sectorBytes, end: (read.lba + 1) * sectorBytes }];
  const header = read.ok ? read.copy.header : read.header;
  if (header) {
    const endLba = header.entriesLba + entryArraySectors(header, sectorBytes);
    ranges.push({ start: header.entriesLba * sectorBytes, end: endLba * sectorBytes });
  }
  return ranges;
}

/** The volumes of a GPT disk, and notes about which copy was used. */
export interface GptResult {
  readonly volumes: Volume[];
  readonly notes: string[];
  readonly header: GptHeader;
  /** The protective MBR, both headers and both entry arrays (as far as they could be read), as disk byte ranges. */
  readonly structures: ExtentSet;
}

/**
 * Reads the GPT of a disk with `sectorBytes`-byte logical blocks: the primary at LBA 1, or the
 * backup at the last LBA when the primary is damaged (§5.3.2 "validating a GPT header").
 * Volumes are named `${diskName}N` with N = entry index + 1, as Linux numbers them.
 */
export async function readGpt(reader: BlockReader, sectorBytes: number, diskName: string): Promise<GptResult> {
  const notes: string[] = [];
  const diskLbas = Math.floor(reader.sizeBytes / sectorBytes);
  const lastLba = diskLbas - 1;
  const primary = await readGptCopy(reader, GPT_PRIMARY_LBA, sectorBytes);
  let copy: GptCopy;
  let backup: CopyRead;
  if (primary.ok) {
    copy = primary.copy;
    backup = await readGptCopy(reader, copy.header.alternateLba, sectorBytes);
    notes.push(...backupNotes(copy.header, backup, lastLba));
  } else {
    backup = await readGptCopy(reader, lastLba, sectorBytes);
    if (!backup.ok) {
      throw new SparsifyError(
        'BAD_LAYOUT',
        `GPT header at LBA ${GPT_PRIMARY_LBA}: ${primary.reason}, and the backup at LBA ${lastLba} is damaged too: ${backup.reason}`,
        {
          hint: "repair the partition table (gdisk's recovery menu, or testdisk), or copy the disk as it is with --no-zero",
        },
      );
    }
    copy = backup.copy;
    notes.push(
      `primary GPT header damaged: used the backup at LBA ${lastLba} (LBA ${GPT_PRIMARY_LBA}: ${primary.reason})`,
    );
  }
  checkGptEntries(copy.entries, copy.header, sectorBytes);
  if (arrayInUsableLbas(copy.header, sectorBytes)) {
    const h = copy.header;
    notes.push(
      `GPT partition entry array at LBA ${h.entriesLba}–${h.entriesLba + entryArraySectors(h, sectorBytes) - 1} ` +
        `lies inside the usable LBAs ${h.firstUsableLba}–${h.lastUsableLba}: it is kept as it is`,
    );
  }
  const volumes = [...copy.entries]
    .sort((a, b) => a.firstLba - b.firstLba)
    .map((e): Volume => ({
      name: `${diskName}${e.index + 1}`,
      offsetBytes: e.firstLba * sectorBytes,
      sizeBytes: (e.lastLba - e.firstLba + 1) * sectorBytes,
      kind: 'partition',
      partitionNumber: e.index + 1,
      partitionType: e.typeGuid,
    }));
  const structures = ExtentSet.from([
    { start: 0, end: sectorBytes },
    ...copyRanges(primary, sectorBytes, diskLbas),
    ...copyRanges(backup, sectorBytes, diskLbas),
  ]);
  return { volumes, notes, header: copy.header, structures };
}

/** Notes when the primary is fine but the backup is misplaced (disk resized) or damaged. */
function backupNotes(primary: GptHeader, backup: CopyRead, lastLba: number): string[] {
  if (primary.alternateLba !== lastLba) {
    return [
      `backup GPT header is at LBA ${primary.alternateLba}, not at the disk's last LBA ${lastLba} (disk resized?)`,
    ];
  }
  return backup.ok ? [] : [`backup GPT header at LBA ${lastLba} is damaged (${backup.reason}); the primary is fine`];
}
