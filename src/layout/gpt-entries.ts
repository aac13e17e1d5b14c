/**
 * GPT partition entries (UEFI Specification 2.10, §5.3.3): the entry array's CRC, its used
 * entries, and the checks every entry must pass before its volume is trusted.
 */
import { guidText, isAllZero, u64le, utf16le, viewOf } from '../binary/bytes.js';
import { crc32 } from '../binary/crc32.js';
import { SparsifyError } from '../errors.js';
import type { GptHeader } from './gpt.js';

/** §5.3.2: SizeOfPartitionEntry is at least 128 bytes. */
export const MIN_ENTRY_BYTES = 128;
/** §5.3.3 Table 5-6 entry field offsets. */
export const ENT = { typeGuid: 0, uniqueGuid: 16, firstLba: 32, lastLba: 40, attributes: 48, name: 56 } as const;
const ENTRY_NAME_BYTES = 72;

/** One used GPT partition entry (§5.3.3); `index` counts from 0 in the entry array. */
export interface GptEntry {
  readonly index: number;
  readonly typeGuid: string;
  readonly uniqueGuid: string;
  readonly firstLba: number;
  /** Inclusive, as in the spec. */
  readonly lastLba: number;
  readonly attributes: bigint;
  readonly name: string;
}

/** Why the entry array does not match the header's CRC, or undefined when it does. */
export function gptEntryArrayProblem(array: Uint8Array, header: GptHeader): string | undefined {
  const bytes = header.entryCount * header.entrySizeBytes;
  if (array.length < bytes) return 'partition entry array truncated';
  return crc32(array.subarray(0, bytes)) === header.entriesCrc32 ? undefined : 'partition entry array CRC mismatch';
}

/** The used entries of an entry array (type GUID not all zero, §5.3.3), in array order. */
export function parseGptEntries(array: Uint8Array, header: GptHeader): GptEntry[] {
  const entries: GptEntry[] = [];
  for (let index = 0; index < header.entryCount; index++) {
    const at = index * header.entrySizeBytes;
    if (at + MIN_ENTRY_BYTES > array.length) break;
    const raw = array.subarray(at, at + MIN_ENTRY_BYTES);
    if (isAllZero(raw.subarray(ENT.typeGuid, ENT.typeGuid + 16))) continue;
    const view = viewOf(raw);
    entries.push({
      index,
      typeGuid: guidText(raw, ENT.typeGuid),
      uniqueGuid: guidText(raw, ENT.uniqueGuid),
      firstLba: u64le(view, ENT.firstLba),
      lastLba: u64le(view, ENT.lastLba),
      attributes: view.getBigUint64(ENT.attributes, true),
      name: utf16le(raw, ENT.name, ENTRY_NAME_BYTES),
    });
  }
  return entries;
}

/**
 * Throws BAD_LAYOUT when an entry is inverted, outside the usable LBAs or the disk, or overlaps
 * another; the message names the entry and its byte offset on the disk.
 */
export function checkGptEntries(entries: readonly GptEntry[], header: GptHeader, sectorBytes: number): void {
  const where = (e: GptEntry): string =>
    `GPT entry ${e.index + 1} at byte ${header.entriesLba * sectorBytes + e.index * header.entrySizeBytes}`;
  for (const e of entries) {
    if (e.firstLba > e.lastLba) {
      throw badEntry(`${where(e)}: first LBA ${e.firstLba} is after its last LBA ${e.lastLba}`);
    }
    if (e.firstLba < header.firstUsableLba || e.lastLba > header.lastUsableLba) {
      throw badEntry(
        `${where(e)}: LBA ${e.firstLba}–${e.lastLba} is outside the usable LBAs ` +
          `${header.firstUsableLba}–${header.lastUsableLba} of the disk`,
      );
    }
  }
  const sorted = [...entries].sort((a, b) => a.firstLba - b.firstLba);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.firstLba <= prev.lastLba) {
      throw badEntry(
        `${where(cur)}: LBA ${cur.firstLba}–${cur.lastLba} overlaps GPT entry ${prev.index + 1} ` +
          `(LBA ${prev.firstLba}–${prev.lastLba})`,
      );
    }
  }
}

function badEntry(message: string): SparsifyError {
  return new SparsifyError('BAD_LAYOUT', message, {
    hint: 'the partition table is inconsistent; check it with `sgdisk --verify` and repair it before sparsifying',
  });
}
