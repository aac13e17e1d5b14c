/**
 * The FAT itself (fatgen103 §4): entry widths and special values, decoding entries, and a scan of
 * the active FAT, chunk by chunk, that finds free runs, compares mirrored copies and checks that
 * the reserved entries are live and no chain runs into a free cluster.
 */
import { viewOf } from '../../binary/bytes.js';
import { ExtentSet, type Range } from '../../disk/extent-set.js';
import type { BlockReader } from '../../disk/types.js';
import type { FatBootSector } from './probe.js';

/** FAT entries read per chunk (even, so that FAT12 chunks start on a byte): at most 1 MiB. */
const CHUNK_ENTRIES = 1 << 18;
/** Entries 0 and 1 are reserved (§4); clusters are numbered from 2. */
export const FIRST_CLUSTER = 2;
const MEDIA_MASK = 0xff;

/** §4 entry width and special values; FAT32 entries are 28 bits (the top 4 are reserved). */
export interface EntryKind {
  readonly bits: 12 | 16 | 32;
  readonly mask: number;
  readonly bad: number;
  readonly endOfChainMin: number;
  /** FAT[1] ClnShutBitMask and HrdErrBitMask (§4); FAT12 has neither. */
  readonly cleanShutdownBit: number;
  readonly noHardErrorBit: number;
}

export const KINDS: Record<FatBootSector['fatType'], EntryKind> = {
  FAT12: { bits: 12, mask: 0xfff, bad: 0xff7, endOfChainMin: 0xff8, cleanShutdownBit: 0, noHardErrorBit: 0 },
  FAT16: {
    bits: 16,
    mask: 0xffff,
    bad: 0xfff7,
    endOfChainMin: 0xfff8,
    cleanShutdownBit: 0x8000,
    noHardErrorBit: 0x4000,
  },
  FAT32: {
    bits: 32,
    mask: 0x0fffffff,
    bad: 0x0ffffff7,
    endOfChainMin: 0x0ffffff8,
    cleanShutdownBit: 0x08000000,
    noHardErrorBit: 0x04000000,
  },
};

/** The geometry the free map needs, all in bytes from the start of the volume. */
export interface FatLayout {
  readonly bs: FatBootSector;
  readonly kind: EntryKind;
  readonly sizeBytes: number;
  readonly clusterCount: number;
  readonly clusterBytes: number;
  readonly dataOffsetBytes: number;
  readonly fatCopyBytes: number;
  /** The FAT that is read; the others are compared with it when mirrored. */
  readonly activeFat: number;
  readonly mirrored: boolean;
}

/** Bytes of FAT holding entries [0, entries). */
export function entryBytes(kind: EntryKind, entries: number): number {
  return Math.ceil((entries * kind.bits) / 8);
}

/** The value of entry `index` of a chunk that starts at an even entry. */
function entryAt(bytes: Uint8Array, view: DataView, index: number, kind: EntryKind): number {
  if (kind.bits === 16) return view.getUint16(index * 2, true);
  if (kind.bits === 32) return view.getUint32(index * 4, true) & kind.mask;
  const at = (index * 3) >> 1;
  const pair = bytes[at]! | (bytes[at + 1]! << 8);
  return index & 1 ? pair >> 4 : pair & kind.mask;
}

/** Walks the FAT chunk by chunk: free runs, and the clusters that chains point to. */
class FatScanner {
  readonly freeRuns: Range[] = [];
  freeClusters = 0;
  problem: string | undefined;
  private runStart = -1;
  private readonly pointedTo: Uint8Array;

  constructor(private readonly layout: FatLayout) {
    this.pointedTo = new Uint8Array(Math.ceil((layout.clusterCount + FIRST_CLUSTER) / 8));
  }

  scanChunk(bytes: Uint8Array, firstEntry: number): void {
    const { kind, clusterCount } = this.layout;
    const view = viewOf(bytes);
    const count = Math.min(CHUNK_ENTRIES, clusterCount + FIRST_CLUSTER - firstEntry);
    if (firstEntry === 0) {
      this.problem = this.reservedEntriesProblem(entryAt(bytes, view, 0, kind), entryAt(bytes, view, 1, kind));
    }
    for (let i = firstEntry === 0 ? FIRST_CLUSTER : 0; i < count && !this.problem; i++) {
      this.visit(firstEntry + i, entryAt(bytes, view, i, kind));
    }
  }

  private visit(cluster: number, value: number): void {
    const { kind, clusterCount } = this.layout;
    if (value === 0) {
      if (this.runStart < 0) this.runStart = cluster;
      this.freeClusters++;
      return;
    }
    this.endRun(cluster);
    if (value >= FIRST_CLUSTER && value < clusterCount + FIRST_CLUSTER) {
      this.pointedTo[value >> 3]! |= 1 << (value & 7);
    } else if (value !== kind.bad && value < kind.endOfChainMin) {
      this.problem = `FAT entry of cluster ${cluster} holds 0x${value.toString(16)}, which is no cluster`;
    }
  }

  private endRun(cluster: number): void {
    if (this.runStart < 0) return;
    this.freeRuns.push({ start: this.runStart, end: cluster });
    this.runStart = -1;
  }

  /** §4: FAT[0] holds the media byte; FAT[1] the clean-shutdown and no-hard-error bits. */
  private reservedEntriesProblem(entry0: number, entry1: number): string | undefined {
    const { kind, bs } = this.layout;
    if ((entry0 & MEDIA_MASK) !== bs.media) return 'FAT[0] does not hold the media byte: the FAT is not live';
    if (kind.cleanShutdownBit && !(entry1 & kind.cleanShutdownBit)) {
      return 'FAT volume was not cleanly unmounted (FAT[1] clean-shutdown bit clear)';
    }
    if (kind.noHardErrorBit && !(entry1 & kind.noHardErrorBit)) {
      return 'FAT volume recorded disk I/O errors (FAT[1] hard-error bit clear)';
    }
    return undefined;
  }

  /** Closes the last run and checks that no chain continues into a free cluster. */
  finish(): ExtentSet {
    this.endRun(this.layout.clusterCount + FIRST_CLUSTER);
    const free = ExtentSet.from(this.freeRuns);
    const root = this.layout.bs.rootCluster;
    if (!this.problem && this.layout.bs.fatType === 'FAT32' && free.covers(root, root + 1)) {
      this.problem = `FAT32 root directory cluster ${root} is marked free`;
    }
    for (const run of free.ranges) {
      for (let c = run.start; c < run.end && !this.problem; c++) {
        if (this.pointedTo[c >> 3]! & (1 << (c & 7))) this.problem = `a FAT cluster chain runs into free cluster ${c}`;
      }
    }
    return free;
  }
}

function fatOffsetBytes(layout: FatLayout, copy: number): number {
  return (layout.bs.reservedSectors + copy * layout.bs.fatSectors) * layout.bs.bytesPerSector;
}

/** Whether another FAT copy differs from the active one over this chunk's cluster entries (not FAT[0], FAT[1]). */
async function copiesDiffer(
  reader: BlockReader,
  layout: FatLayout,
  chunk: Uint8Array,
  chunkOffset: number,
): Promise<boolean> {
  if (!layout.mirrored) return false;
  const skip = chunkOffset === 0 ? entryBytes(layout.kind, FIRST_CLUSTER) : 0;
  for (let copy = 0; copy < layout.bs.fatCount; copy++) {
    if (copy === layout.activeFat) continue;
    const other = await reader.read(fatOffsetBytes(layout, copy) + chunkOffset + skip, chunk.length - skip);
    if (Buffer.compare(other, chunk.subarray(skip)) !== 0) return true;
  }
  return false;
}

/** Reads the active FAT in bounded chunks; returns free clusters (cluster numbers) or a problem. */
export async function scanFat(reader: BlockReader, layout: FatLayout): Promise<{ free: ExtentSet; scanner: FatScanner }> {
  const scanner = new FatScanner(layout);
  const entries = layout.clusterCount + FIRST_CLUSTER;
  const base = fatOffsetBytes(layout, layout.activeFat);
  for (let first = 0; first < entries && !scanner.problem; first += CHUNK_ENTRIES) {
    const chunkOffset = entryBytes(layout.kind, first);
    const length = entryBytes(layout.kind, Math.min(first + CHUNK_ENTRIES, entries)) - chunkOffset;
    const chunk = await reader.read(base + chunkOffset, length);
    if (await copiesDiffer(reader, layout, chunk, chunkOffset)) {
      scanner.problem = `FAT copies differ (near cluster ${Math.max(first, FIRST_CLUSTER)})`;
      break;
    }
    scanner.scanChunk(chunk, first);
  }
  return { free: scanner.finish(), scanner };
}
