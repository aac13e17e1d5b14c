/**
 * The DOS/MBR partition table and its chain of extended boot records (EBRs), decoded as the
 * Linux kernel does (block/partitions/msdos.c): primaries are numbered 1–4 by slot, logical
 * partitions 5, 6, … in chain order, and the extended container itself is not a volume.
 * Sector size is 512 bytes: LBAs in an MBR count logical blocks and raw images use 512.
 */
import { isAllZero, viewOf } from '../binary/bytes.js';
import { ExtentSet } from '../disk/extent-set.js';
import type { BlockReader } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import type { Volume } from './types.js';

/** The MBR's logical block size as raw images use it. */
export const MBR_SECTOR_BYTES = 512;
/** Boot code fills bytes 0–445; four 16-byte entries follow; bytes 510–511 are 0x55 0xAA. */
const ENTRY_TABLE_OFFSET = 446;
const ENTRY_BYTES = 16;
const PRIMARY_SLOTS = 4;
const SIGNATURE_OFFSET = 510;
/** Entry fields: boot indicator, partition type, first LBA (u32 LE), sector count (u32 LE). */
const ENT = { status: 0, type: 4, firstLba: 8, sectors: 12 } as const;
/** The only boot indicator values a partition table holds (libblkid dos.c rejects others). */
const BOOT_INDICATORS = new Set([0x00, 0x80]);
/** Partition type of a GPT protective MBR entry (UEFI 2.10 §5.2.3). */
export const MBR_TYPE_GPT_PROTECTIVE = 0xee;
/** DOS extended, Windows extended (LBA) and Linux extended container types. */
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
/** Linux numbers the first logical partition 5, whatever the primaries in use. */
export const FIRST_LOGICAL_NUMBER = 5;
/** Linux sd devices have 256 minors per disk: no more logical partitions (nor EBRs) than that. */
const MAX_LOGICAL_PARTITIONS = 256 - FIRST_LOGICAL_NUMBER;
/** In an EBR, slot 0 describes the logical partition and slot 1 links to the next EBR. */
const EBR_DATA_SLOTS = 2;

/** One 16-byte partition entry. LBAs are relative to the table's anchor for EBR entries. */
export interface MbrEntry {
  readonly slot: number;
  readonly status: number;
  readonly type: number;
  readonly firstLba: number;
  readonly sectors: number;
}

/** Whether a sector ends with the 0x55 0xAA boot signature. */
export function hasMbrSignature(sector: Uint8Array): boolean {
  return (
    sector.length >= SIGNATURE_OFFSET + 2 && sector[SIGNATURE_OFFSET] === 0x55 && sector[SIGNATURE_OFFSET + 1] === 0xaa
  );
}

/** The four entries of an MBR or EBR sector, empty ones included. */
export function parseMbrEntries(sector: Uint8Array): MbrEntry[] {
  if (sector.length < SIGNATURE_OFFSET) throw new RangeError('an MBR sector is 512 bytes');
  const view = viewOf(sector);
  return Array.from({ length: PRIMARY_SLOTS }, (_, slot) => {
    const at = ENTRY_TABLE_OFFSET + slot * ENTRY_BYTES;
    return {
      slot,
      status: sector[at + ENT.status]!,
      type: sector[at + ENT.type]!,
      firstLba: view.getUint32(at + ENT.firstLba, true),
      sectors: view.getUint32(at + ENT.sectors, true),
    };
  });
}

/** An unused slot: type 0 or no sectors. */
export function isEmptyEntry(entry: MbrEntry): boolean {
  return entry.type === 0 || entry.sectors === 0;
}

/** Whether the type byte marks an extended container. */
export function isExtendedType(type: number): boolean {
  return EXTENDED_TYPES.has(type);
}

/** Whether every boot indicator is 0x00 or 0x80, as in any real partition table. */
export function hasValidBootIndicators(entries: readonly MbrEntry[]): boolean {
  return entries.every((e) => BOOT_INDICATORS.has(e.status));
}

/** A partition found in the MBR or the EBR chain, in absolute LBAs. */
interface Found {
  readonly number: number;
  readonly type: number;
  readonly firstLba: number;
  readonly sectors: number;
  /** Where its entry lies, for messages. */
  readonly where: string;
}

function badLayout(message: string): SparsifyError {
  return new SparsifyError('BAD_LAYOUT', message, {
    hint: 'the partition table is inconsistent; check it with `sfdisk --verify` and repair it before sparsifying',
  });
}

function entryWhere(tableLba: number, slot: number, what: string): string {
  return `${what} at LBA ${tableLba}, entry ${slot + 1} (byte ${tableLba * MBR_SECTOR_BYTES + ENTRY_TABLE_OFFSET + slot * ENTRY_BYTES})`;
}

function checkInside(p: Found, lowLba: number, endLba: number, container: string): void {
  if (p.firstLba < lowLba || p.firstLba + p.sectors > endLba) {
    throw badLayout(
      `${p.where}: LBA ${p.firstLba}–${p.firstLba + p.sectors - 1} lies outside ${container} (LBA ${lowLba}–${endLba - 1})`,
    );
  }
}

function checkNoOverlap(parts: readonly Found[]): void {
  const sorted = [...parts].sort((a, b) => a.firstLba - b.firstLba);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.firstLba < prev.firstLba + prev.sectors) {
      throw badLayout(`${cur.where}: partition ${cur.number} overlaps partition ${prev.number}`);
    }
  }
}

/** The logical partition an EBR describes (slot 0, or 1 in odd tables), checked against its container. */
function logicalIn(entries: readonly MbrEntry[], ebrLba: number, number: number, endLba: number): Found | undefined {
  const data = entries.slice(0, EBR_DATA_SLOTS).find((e) => !isEmptyEntry(e) && !isExtendedType(e.type));
  if (!data) return undefined;
  const p: Found = {
    number,
    type: data.type,
    firstLba: ebrLba + data.firstLba,
    sectors: data.sectors,
    where: entryWhere(ebrLba, data.slot, `logical partition ${number} in the EBR`),
  };
  checkInside(p, ebrLba + 1, endLba, 'its extended partition after its EBR');
  return p;
}

/** The LBA of the next EBR (links are relative to the extended partition), or undefined at the end. */
function nextEbrLba(entries: readonly MbrEntry[], ebrLba: number, ext: Found): number | undefined {
  const link = entries.find((e) => !isEmptyEntry(e) && isExtendedType(e.type));
  if (!link) return undefined;
  const endLba = ext.firstLba + ext.sectors;
  const next = ext.firstLba + link.firstLba;
  if (link.firstLba === 0 || next >= endLba) {
    throw badLayout(
      `${entryWhere(ebrLba, link.slot, 'EBR')}: link to LBA ${next} lies outside the extended partition ` +
        `(LBA ${ext.firstLba}–${endLba - 1})`,
    );
  }
  return next;
}

/**
 * Walks the EBR chain of the extended container `ext` and returns its logical partitions,
 * numbered from `firstNumber`. Loops, links and partitions outside the container throw
 * BAD_LAYOUT; a chain whose next EBR has no signature ends there, as in Linux. Every sector
 * read as an EBR, the one that ends the chain included, is added to `ebrLbas`.
 */
async function readLogicals(
  reader: BlockReader,
  ext: Found,
  firstNumber: number,
  notes: string[],
  ebrLbas: number[],
): Promise<Found[]> {
  const endLba = ext.firstLba + ext.sectors;
  const logicals: Found[] = [];
  const visited = new Set<number>();
  let ebrLba = ext.firstLba;
  for (;;) {
    if (visited.has(ebrLba)) {
      throw badLayout(`EBR at LBA ${ebrLba} (byte ${ebrLba * MBR_SECTOR_BYTES}): the EBR chain loops back to it`);
    }
    if (visited.size >= MAX_LOGICAL_PARTITIONS) {
      throw badLayout(`EBR at LBA ${ebrLba}: the EBR chain is longer than ${MAX_LOGICAL_PARTITIONS} links`);
    }
    visited.add(ebrLba);
    ebrLbas.push(ebrLba);
    const sector = await reader.read(ebrLba * MBR_SECTOR_BYTES, MBR_SECTOR_BYTES);
    if (!hasMbrSignature(sector)) {
      if (!isAllZero(sector)) {
        notes.push(`EBR at LBA ${ebrLba} has no 0x55AA signature: the logical partitions end there`);
      }
      return logicals;
    }
    const entries = parseMbrEntries(sector);
    const logical = logicalIn(entries, ebrLba, firstNumber + logicals.length, endLba);
    if (logical) logicals.push(logical);
    const next = nextEbrLba(entries, ebrLba, ext);
    if (next === undefined) return logicals;
    ebrLba = next;
  }
}

/** What {@link readMbr} found. */
export interface MbrResult {
  readonly volumes: Volume[];
  readonly notes: string[];
  /** Sector 0 and every EBR sector of the chains, as disk byte ranges. */
  readonly structures: ExtentSet;
  /** The LBA of every sector read as an EBR, in chain order (the one that ends a chain included). */
  readonly ebrLbas: readonly number[];
}

/** The volumes of an MBR disk: primaries, then logical partitions, sorted by offset. */
export async function readMbr(reader: BlockReader, mbrSector: Uint8Array, diskName: string): Promise<MbrResult> {
  const notes: string[] = [];
  const ebrLbas: number[] = [];
  const diskSectors = Math.floor(reader.sizeBytes / MBR_SECTOR_BYTES);
  const primaries: Found[] = parseMbrEntries(mbrSector)
    .filter((e) => !isEmptyEntry(e))
    .map((e) => ({
      number: e.slot + 1,
      type: e.type,
      firstLba: e.firstLba,
      sectors: e.sectors,
      where: entryWhere(0, e.slot, `partition ${e.slot + 1} in the MBR`),
    }));
  for (const p of primaries) checkInside(p, 1, diskSectors, 'the disk after the MBR');
  checkNoOverlap(primaries);
  const found = primaries.filter((p) => !isExtendedType(p.type));
  let nextLogical = FIRST_LOGICAL_NUMBER;
  for (const ext of primaries.filter((p) => isExtendedType(p.type))) {
    const logicals = await readLogicals(reader, ext, nextLogical, notes, ebrLbas);
    checkNoOverlap(logicals);
    found.push(...logicals);
    nextLogical += logicals.length;
  }
  const volumes = found
    .sort((a, b) => a.firstLba - b.firstLba)
    .map((p): Volume => ({
      name: `${diskName}${p.number}`,
      offsetBytes: p.firstLba * MBR_SECTOR_BYTES,
      sizeBytes: p.sectors * MBR_SECTOR_BYTES,
      kind: 'partition',
      partitionNumber: p.number,
      partitionType: p.type.toString(16).padStart(2, '0'),
    }));
  const structures = ExtentSet.from(
    [0, ...ebrLbas].map((lba) => ({ start: lba * MBR_SECTOR_BYTES, end: (lba + 1) * MBR_SECTOR_BYTES })),
  );
  return { volumes, notes, structures, ebrLbas };
}
