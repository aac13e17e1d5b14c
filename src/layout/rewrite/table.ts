/**
 * A partition table to rewrite: its bytes read from the old disk, the rewrite for new places
 * and a new disk size, and the check that the result reads back, through the same readers the
 * run uses (read-layout.ts), with every partition at its new place.
 */
import type { BlockReader } from '../../disk/types.js';
import { SparsifyError } from '../../errors.js';
import { parseGptHeader } from '../gpt.js';
import { gptEntryArrayProblem } from '../gpt-entries.js';
import { MBR_SECTOR_BYTES, hasMbrSignature, readMbr } from '../mbr.js';
import { readLayout } from '../read-layout.js';
import type { Layout } from '../types.js';
import { rewriteGpt, type GptTableBytes } from './gpt.js';
import { rewriteMbr, type MbrTableBytes } from './mbr.js';
import type { NewPlaces, SectorWrite } from './types.js';

/** The old table's bytes, by kind. */
export type TableBytes = { readonly table: 'gpt'; readonly gpt: GptTableBytes } | { readonly table: 'mbr'; readonly mbr: MbrTableBytes };

/**
 * Reads the bytes of the table `layout` describes. A GPT is rewritten from its primary copy,
 * which must be intact (a disk whose primary is damaged is repaired first, not shrunk).
 */
export async function readTableBytes(reader: BlockReader, layout: Layout): Promise<TableBytes> {
  const sector0 = await reader.read(0, MBR_SECTOR_BYTES);
  if (layout.table === 'gpt') {
    const sectorBytes = layout.sectorSizeBytes;
    const header = await reader.read(sectorBytes, sectorBytes);
    const checked = parseGptHeader(header, 1, Math.floor(reader.sizeBytes / sectorBytes));
    if (!checked.ok) throw damaged(`the primary GPT header is damaged (${checked.reason})`);
    const h = checked.header;
    const entries = await reader.read(h.entriesLba * sectorBytes, h.entryCount * h.entrySizeBytes);
    const problem = gptEntryArrayProblem(entries, h);
    if (problem) throw damaged(`the primary GPT's ${problem}`);
    return { table: 'gpt', gpt: { sectorBytes, protectiveMbr: sector0, header, entries } };
  }
  if (layout.table === 'mbr') {
    const { ebrLbas } = await readMbr(reader, sector0, '/dev/sda');
    const ebrs = [];
    for (const lba of ebrLbas) {
      const bytes = await reader.read(lba * MBR_SECTOR_BYTES, MBR_SECTOR_BYTES);
      if (hasMbrSignature(bytes)) ebrs.push({ lba, bytes });
    }
    return { table: 'mbr', mbr: { sector0, ebrs } };
  }
  throw new SparsifyError('UNSUPPORTED', 'the disk has no partition table to rewrite');
}

function damaged(what: string): SparsifyError {
  return new SparsifyError('BAD_LAYOUT', `${what}: the partition table cannot be rewritten`, {
    hint: 'repair it first (`sgdisk --verify`, gdisk) or sparsify without --shrink',
  });
}

/** The writes that move the partitions to `places` on a disk of `newDiskBytes`. */
export function rewriteTable(bytes: TableBytes, places: NewPlaces, newDiskBytes: number): SectorWrite[] {
  return bytes.table === 'gpt' ? rewriteGpt(bytes.gpt, places, newDiskBytes) : rewriteMbr(bytes.mbr, places);
}

/**
 * Reads the layout of a disk of `newDiskBytes` holding only `writes` (zeros elsewhere): see
 * {@link checkTableAt}. Run before any byte moves, so a rewrite that does not read back moves nothing.
 */
export function checkRewrite(writes: readonly SectorWrite[], newDiskBytes: number, table: 'gpt' | 'mbr', places: NewPlaces, volumeCount: number): Promise<Layout> {
  return checkTableAt(writesReader(writes, newDiskBytes), table, places, volumeCount, 'the rewritten partition table does not read back');
}

/**
 * Reads the layout on `reader` (through read-layout.ts, as the run does: CRCs, both GPT copies,
 * the EBR chain) and throws INTERNAL, prefixed `what`, unless it is a `table` whose partitions lie
 * exactly at `places`, with no note (a note means a damaged or misplaced copy) and `volumeCount` volumes.
 */
export async function checkTableAt(reader: BlockReader, table: 'gpt' | 'mbr', places: NewPlaces, volumeCount: number, what: string): Promise<Layout> {
  const layout = await readLayout(reader);
  const fail = (why: string): never => {
    throw new SparsifyError('INTERNAL', `${what}: ${why}`);
  };
  if (layout.table !== table) fail(`it reads as ${layout.table}, not ${table}`);
  if (layout.notes.length > 0) fail(layout.notes.join('; '));
  if (layout.volumes.length !== volumeCount) fail(`${layout.volumes.length} partitions, not ${volumeCount}`);
  for (const [number, place] of places) {
    const v = layout.volumes.find((x) => x.partitionNumber === number);
    const sb = layout.sectorSizeBytes;
    if (!v || v.offsetBytes !== place.firstLba * sb || v.sizeBytes !== place.sectors * sb) fail(`partition ${number} is not at LBA ${place.firstLba}+${place.sectors}`);
  }
  return layout;
}

/** A reader of a disk of `sizeBytes` that holds `writes` and zeros elsewhere. */
export function writesReader(writes: readonly SectorWrite[], sizeBytes: number): BlockReader {
  return {
    sizeBytes,
    read(offsetBytes, lengthBytes) {
      if (offsetBytes < 0 || offsetBytes + lengthBytes > sizeBytes) {
        return Promise.reject(new RangeError(`read ${offsetBytes}+${lengthBytes} outside ${sizeBytes}`));
      }
      const out = new Uint8Array(lengthBytes);
      for (const w of writes) {
        const start = Math.max(w.offsetBytes, offsetBytes);
        const end = Math.min(w.offsetBytes + w.bytes.length, offsetBytes + lengthBytes);
        if (start < end) out.set(w.bytes.subarray(start - w.offsetBytes, end - w.offsetBytes), start - offsetBytes);
      }
      return Promise.resolve(out);
    },
  };
}
