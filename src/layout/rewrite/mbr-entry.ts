/**
 * Writing one 16-byte DOS partition entry's place (its LBA fields and the CHS fields that
 * mirror them); status and type bytes stay as they were.
 */
import { viewOf } from '../../binary/bytes.js';
import { chsBytes, type ChsOverflow } from './chs.js';

/** The entry table of an MBR or EBR sector starts at byte 446; entries are 16 bytes. */
export const ENTRY_TABLE_OFFSET = 446;
export const ENTRY_BYTES = 16;
/** Entry fields: start CHS at 1, end CHS at 5, first LBA (u32 LE) at 8, sector count (u32 LE) at 12. */
const FIELD = { startChs: 1, endChs: 5, firstLba: 8, sectors: 12 } as const;
/** The LBA fields are 32 bits. */
export const MAX_MBR_LBA = 0xffffffff;

/**
 * Sets entry `slot` of `sector` to `relativeLba` (what the LBA field holds: absolute in the MBR,
 * relative in an EBR) and `sectors`; the CHS fields get the absolute addresses `absoluteLba`.
 */
export function setEntryPlace(sector: Uint8Array, slot: number, relativeLba: number, sectors: number, absoluteLba: number, overflow?: ChsOverflow): void {
  if (relativeLba > MAX_MBR_LBA || sectors > MAX_MBR_LBA || relativeLba < 0 || sectors < 1) {
    throw new RangeError(`MBR entry ${slot + 1}: LBA ${relativeLba} and ${sectors} sectors do not fit 32 bits`);
  }
  const at = ENTRY_TABLE_OFFSET + slot * ENTRY_BYTES;
  const view = viewOf(sector);
  view.setUint32(at + FIELD.firstLba, relativeLba, true);
  view.setUint32(at + FIELD.sectors, sectors, true);
  sector.set(chsBytes(absoluteLba, overflow), at + FIELD.startChs);
  sector.set(chsBytes(absoluteLba + sectors - 1, overflow), at + FIELD.endChs);
}
