/**
 * Rewriting a DOS/MBR partition table, extended boot records included, for partitions that
 * moved. As for GPT the old sectors are patched, not re-encoded: boot code, disk signature,
 * status and type bytes stay. The chain keeps its shape (Linux's block/partitions/msdos.c reads
 * it): each EBR stays the same number of sectors before its logical partition, so an EBR moves
 * with its partition; the extended container starts at the first EBR and, once anything in it
 * moved, ends where its last logical partition ends; each link (slot 1 of an EBR) points to the
 * next EBR relative to the container and spans that EBR through the end of its partition.
 */
import { SparsifyError } from '../../errors.js';
import { FIRST_LOGICAL_NUMBER, MBR_SECTOR_BYTES, isEmptyEntry, isExtendedType, parseMbrEntries, type MbrEntry } from '../mbr.js';
import { ENTRY_BYTES, ENTRY_TABLE_OFFSET, setEntryPlace } from './mbr-entry.js';
import type { NewPlace, NewPlaces, SectorWrite } from './types.js';

/** In an EBR, slot 0 (or 1 in odd tables) describes the logical partition. */
const EBR_DATA_SLOTS = 2;

/** One EBR of the chain as it is on the old disk. */
export interface EbrBytes {
  readonly lba: number;
  readonly bytes: Uint8Array;
}

/** The bytes of an MBR table as they are on the old disk: what {@link rewriteMbr} patches. */
export interface MbrTableBytes {
  readonly sector0: Uint8Array;
  /** The EBRs of the extended container in chain order (the sectors with a 0x55AA signature). */
  readonly ebrs: readonly EbrBytes[];
}

/** One logical partition of the chain: its EBR and where both go. */
interface Logical {
  readonly bytes: Uint8Array;
  readonly data: MbrEntry;
  readonly link: MbrEntry | undefined;
  readonly oldEbrLba: number;
  readonly place: NewPlace;
  readonly ebrLba: number;
}

const isExtended = (e: MbrEntry): boolean => !isEmptyEntry(e) && isExtendedType(e.type);

/**
 * The writes that put the partitions at `places` (by Linux number; those not named stay): sector
 * 0 and every EBR at its new place. The caller checks the result with `checkRewrite`.
 */
export function rewriteMbr(table: MbrTableBytes, places: NewPlaces): SectorWrite[] {
  const mbr = new Uint8Array(table.sector0.subarray(0, MBR_SECTOR_BYTES));
  const entries = parseMbrEntries(mbr);
  const extended = entries.filter(isExtended);
  if (extended.length > 1) {
    throw new SparsifyError('UNSUPPORTED', 'an MBR with more than one extended partition cannot be rewritten');
  }
  for (const e of entries) {
    if (isEmptyEntry(e) || isExtended(e)) continue;
    const place = places.get(e.slot + 1);
    if (place) setEntryPlace(mbr, e.slot, place.firstLba, place.sectors, place.firstLba);
  }
  const known = new Set(entries.filter((e) => !isEmptyEntry(e) && !isExtended(e)).map((e) => e.slot + 1));
  const ext = extended[0];
  const logicals = ext ? chain(table.ebrs, places) : [];
  logicals.forEach((_, i) => known.add(FIRST_LOGICAL_NUMBER + i));
  for (const number of places.keys()) {
    if (!known.has(number)) throw new RangeError(`MBR partition ${number} is not in the table`);
  }
  if (!ext || logicals.length === 0) return [{ offsetBytes: 0, bytes: mbr }];
  const first = logicals[0]!;
  const last = logicals[logicals.length - 1]!;
  const moved = logicals.some((l) => l.ebrLba !== l.oldEbrLba || l.place.sectors !== l.data.sectors);
  if (first.oldEbrLba !== ext.firstLba) throw new SparsifyError('BAD_LAYOUT', `the first EBR is not at the start of the extended partition (LBA ${ext.firstLba})`);
  const extStart = first.ebrLba;
  const extSectors = moved ? last.place.firstLba + last.place.sectors - extStart : ext.sectors;
  setEntryPlace(mbr, ext.slot, extStart, extSectors, extStart);
  return [{ offsetBytes: 0, bytes: mbr }, ...logicals.map((l, i) => ({ offsetBytes: l.ebrLba * MBR_SECTOR_BYTES, bytes: ebrSector(l, logicals[i + 1], extStart) }))];
}

/**
 * Logical partition number → bytes from its EBR to its first sector: the room the table needs
 * right before it wherever it goes (its EBR keeps that distance, see the module comment).
 */
export function logicalLeadBytes(table: MbrTableBytes): Map<number, number> {
  return new Map(chain(table.ebrs, new Map()).map((l, i) => [FIRST_LOGICAL_NUMBER + i, l.data.firstLba * MBR_SECTOR_BYTES]));
}

/** The chain's logical partitions, numbered from 5, each with its new place and its EBR's. */
function chain(ebrs: readonly EbrBytes[], places: NewPlaces): Logical[] {
  return ebrs.map((ebr, i): Logical => {
    const entries = parseMbrEntries(ebr.bytes);
    const data = entries.slice(0, EBR_DATA_SLOTS).find((e) => !isEmptyEntry(e) && !isExtended(e));
    if (!data) {
      throw new SparsifyError('UNSUPPORTED', `the EBR at LBA ${ebr.lba} describes no logical partition: its chain cannot be rewritten`);
    }
    const oldPlace = { firstLba: ebr.lba + data.firstLba, sectors: data.sectors };
    const place = places.get(FIRST_LOGICAL_NUMBER + i) ?? oldPlace;
    const ebrLba = place.firstLba - data.firstLba;
    if (ebrLba < 1) throw new RangeError(`logical partition ${FIRST_LOGICAL_NUMBER + i} at LBA ${place.firstLba} leaves no room for its EBR`);
    return { bytes: ebr.bytes, data, link: entries.find(isExtended), oldEbrLba: ebr.lba, place, ebrLba };
  });
}

/** The EBR of `l` with its data entry at its place and its link to `next` (cleared for the last). */
function ebrSector(l: Logical, next: Logical | undefined, extStart: number): Uint8Array {
  const sector = new Uint8Array(l.bytes.subarray(0, MBR_SECTOR_BYTES));
  setEntryPlace(sector, l.data.slot, l.data.firstLba, l.place.sectors, l.place.firstLba);
  const linkSlot = l.link?.slot ?? (l.data.slot === 0 ? 1 : 0);
  if (!next) {
    sector.fill(0, ENTRY_TABLE_OFFSET + linkSlot * ENTRY_BYTES, ENTRY_TABLE_OFFSET + (linkSlot + 1) * ENTRY_BYTES);
    return sector;
  }
  if (!l.link) {
    // A link where there was none: the type Linux's fdisk writes for links.
    sector[ENTRY_TABLE_OFFSET + linkSlot * ENTRY_BYTES + 4] = 0x05;
  }
  const nextEnd = next.place.firstLba + next.place.sectors;
  setEntryPlace(sector, linkSlot, next.ebrLba - extStart, nextEnd - next.ebrLba, next.ebrLba);
  return sector;
}
