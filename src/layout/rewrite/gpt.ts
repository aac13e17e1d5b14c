/**
 * Rewriting a GPT for a disk whose partitions moved and whose size changed (UEFI Specification
 * 2.10, §5.3 "GUID Partition Table (GPT) Disk Layout"). The old table's own bytes are patched,
 * never re-encoded: partition GUIDs, types, names, attributes, the disk GUID, reserved bytes and
 * the MBR's boot code stay byte for byte; only the LBA fields, the protective MBR's size and
 * the CRCs change. The backup entry array and header go to the new disk's end, as gdisk puts
 * them (§5.3.2: the backup header at the last LBA, its entry array just before it).
 */
import { u64le, viewOf } from '../../binary/bytes.js';
import { crc32 } from '../../binary/crc32.js';
import { SparsifyError } from '../../errors.js';
import { ENT, checkGptEntries, parseGptEntries } from '../gpt-entries.js';
import { HDR, parseGptHeader, type GptHeader } from '../gpt.js';
import { MBR_SECTOR_BYTES, MBR_TYPE_GPT_PROTECTIVE, isEmptyEntry, parseMbrEntries } from '../mbr.js';
import { MAX_MBR_LBA, setEntryPlace } from './mbr-entry.js';
import type { NewPlaces, SectorWrite } from './types.js';

/** The primary header lies at LBA 1 (§5.3.2). */
const PRIMARY_LBA = 1;

/** The bytes of a GPT as they are on the old disk: what {@link rewriteGpt} patches. */
export interface GptTableBytes {
  /** The logical block size the GPT counts in (512 or 4096). */
  readonly sectorBytes: number;
  /** Sector 0: boot code, disk signature, the protective MBR entry (512 bytes). */
  readonly protectiveMbr: Uint8Array;
  /** The primary header's whole logical block (LBA 1). */
  readonly header: Uint8Array;
  /** The primary entry array: entryCount × entrySize bytes. */
  readonly entries: Uint8Array;
}

/**
 * The writes that turn the disk into one of `newDiskBytes` bytes whose partitions lie at
 * `places` (partitions not named stay where they are): protective MBR, primary header and entry
 * array, backup entry array and header at the new end. Throws BAD_LAYOUT when a partition would
 * lie outside the new usable LBAs or overlap another, UNSUPPORTED for a hybrid MBR (its MBR
 * entries would describe the old places).
 */
export function rewriteGpt(table: GptTableBytes, places: NewPlaces, newDiskBytes: number): SectorWrite[] {
  const { sectorBytes } = table;
  if (!Number.isSafeInteger(newDiskBytes) || newDiskBytes % sectorBytes !== 0) {
    throw new RangeError(`new disk size ${newDiskBytes} is not a whole number of ${sectorBytes}-byte blocks`);
  }
  const old = decodeHeader(table.header, PRIMARY_LBA);
  const diskLbas = newDiskBytes / sectorBytes;
  const lastLba = diskLbas - 1;
  const arraySectors = Math.ceil(table.entries.length / sectorBytes);
  const backupEntriesLba = lastLba - arraySectors;
  const lastUsableLba = backupEntriesLba - 1;
  if (lastUsableLba < old.firstUsableLba) {
    throw new RangeError(`a disk of ${newDiskBytes} bytes has no room for the GPT's usable LBAs`);
  }
  const entries = movedEntries(table.entries, old, places);
  const entriesCrc32 = crc32(entries);
  checkGptEntries(parseGptEntries(entries, old), { ...old, lastUsableLba }, sectorBytes);

  const primary = headerCopy(table.header, old, { alternateLba: lastLba, lastUsableLba, entriesCrc32 });
  const backup = headerCopy(table.header, old, {
    myLba: lastLba,
    alternateLba: PRIMARY_LBA,
    lastUsableLba,
    entriesLba: backupEntriesLba,
    entriesCrc32,
  });
  decodeHeader(primary, PRIMARY_LBA, diskLbas);
  decodeHeader(backup, lastLba, diskLbas);
  return [
    { offsetBytes: 0, bytes: protectiveMbr(table.protectiveMbr, diskLbas) },
    { offsetBytes: PRIMARY_LBA * sectorBytes, bytes: primary },
    { offsetBytes: old.entriesLba * sectorBytes, bytes: entries },
    { offsetBytes: backupEntriesLba * sectorBytes, bytes: entries },
    { offsetBytes: lastLba * sectorBytes, bytes: backup },
  ];
}

/** The header in `sector`, which must be valid at `atLba` (of a disk of `diskLbas` blocks when given). */
function decodeHeader(sector: Uint8Array, atLba: number, diskLbas = Number.MAX_SAFE_INTEGER): GptHeader {
  const checked = parseGptHeader(sector, atLba, diskLbas);
  if (!checked.ok) throw new SparsifyError('BAD_LAYOUT', `GPT header at LBA ${atLba}: ${checked.reason}`);
  return checked.header;
}

/** A copy of the entry array with the LBAs of the entries in `places` changed. */
function movedEntries(array: Uint8Array, header: GptHeader, places: NewPlaces): Uint8Array {
  const entries = new Uint8Array(array);
  const used = new Set(parseGptEntries(array, header).map((e) => e.index + 1));
  const view = viewOf(entries);
  for (const [number, place] of places) {
    if (!used.has(number)) throw new RangeError(`GPT partition ${number} is not in the table`);
    if (!Number.isSafeInteger(place.firstLba) || !Number.isSafeInteger(place.sectors) || place.sectors < 1) {
      throw new RangeError(`GPT partition ${number}: bad new place ${place.firstLba}+${place.sectors}`);
    }
    const at = (number - 1) * header.entrySizeBytes;
    view.setBigUint64(at + ENT.firstLba, BigInt(place.firstLba), true);
    view.setBigUint64(at + ENT.lastLba, BigInt(place.firstLba + place.sectors - 1), true);
  }
  return entries;
}

/** The header fields a rewrite changes. */
interface HeaderChanges {
  readonly myLba?: number;
  readonly alternateLba: number;
  readonly lastUsableLba: number;
  readonly entriesLba?: number;
  readonly entriesCrc32: number;
}

/** A copy of the header block with `changes` applied and its CRC recomputed over HeaderSize bytes (§5.3.2). */
function headerCopy(sector: Uint8Array, old: GptHeader, changes: HeaderChanges): Uint8Array {
  const copy = new Uint8Array(sector);
  const view = viewOf(copy);
  view.setBigUint64(HDR.myLba, BigInt(changes.myLba ?? old.myLba), true);
  view.setBigUint64(HDR.alternateLba, BigInt(changes.alternateLba), true);
  view.setBigUint64(HDR.lastUsableLba, BigInt(changes.lastUsableLba), true);
  view.setBigUint64(HDR.entriesLba, BigInt(changes.entriesLba ?? old.entriesLba), true);
  view.setUint32(HDR.entriesCrc, changes.entriesCrc32, true);
  view.setUint32(HDR.headerCrc, 0, true);
  const headerSize = view.getUint32(HDR.headerSize, true);
  view.setUint32(HDR.headerCrc, crc32(copy.subarray(0, headerSize)), true);
  return copy;
}

/**
 * Sector 0 with its protective entry resized to the new disk (§5.2.3: it covers LBA 1 to the
 * last LBA, or 0xFFFFFFFF blocks when the disk is larger). Other entries (a hybrid MBR) refuse.
 */
function protectiveMbr(sector0: Uint8Array, diskLbas: number): Uint8Array {
  const mbr = new Uint8Array(sector0.subarray(0, MBR_SECTOR_BYTES));
  const entries = parseMbrEntries(mbr);
  const others = entries.filter((e) => !isEmptyEntry(e) && e.type !== MBR_TYPE_GPT_PROTECTIVE);
  if (others.length > 0) {
    throw new SparsifyError('UNSUPPORTED', 'a hybrid MBR (GPT with MBR partitions beside the protective entry) cannot be rewritten', {
      hint: "turn it into a pure GPT first (gdisk's recovery menu), or sparsify without --shrink",
    });
  }
  const protective = entries.find((e) => e.type === MBR_TYPE_GPT_PROTECTIVE);
  if (!protective) throw new SparsifyError('BAD_LAYOUT', 'the protective MBR has no 0xEE entry');
  const sectors = Math.min(diskLbas - protective.firstLba, MAX_MBR_LBA);
  setEntryPlace(mbr, protective.slot, protective.firstLba, sectors, protective.firstLba, 'all-ones');
  return mbr;
}

/** The first usable LBA and the block count of the backup structures: what a new disk size must leave room for. */
export function gptOverheadLbas(header: Uint8Array): { firstUsableLba: number; backupLbas: number; sectorBytes: number } {
  const view = viewOf(header);
  const count = view.getUint32(HDR.entryCount, true);
  const size = view.getUint32(HDR.entrySize, true);
  return { firstUsableLba: u64le(view, HDR.firstUsableLba), backupLbas: 1 + Math.ceil((count * size) / header.length), sectorBytes: header.length };
}
