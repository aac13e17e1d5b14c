/**
 * The free space of a FAT12/16/32 volume, read from its own FAT without mounting (Microsoft
 * "FAT: General Overview of On-Disk Format" 1.03, fatgen103). A cluster is free when its FAT
 * entry is 0 (§4); reserved sectors, FATs, the FAT12/16 root directory and the sectors after
 * the last cluster are never free. Entries are decoded here; the boot sector by probe-fat.ts.
 *
 * Errors: BAD_IMAGE when the structures cannot be decoded at all (no valid BPB, a FAT too
 * small for the count of clusters, an active FAT that does not exist). Untrusted when they
 * decode but say the volume is not clean or not consistent: dirty flags, FAT copies that
 * differ, entries that are no cluster, chains that run into free clusters, a filesystem larger
 * than its volume. The FSInfo free count is advisory (§5: "not necessarily correct") and only
 * reported, never trusted or required to agree.
 */
import { ExtentSet, type Range } from '../disk/extent-set.js';
import type { BlockReader } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { viewOf } from '../layout/bytes.js';
import { parseFatBootSector, type FatBootSector } from './probe-fat.js';
import type { FreeMap } from './types.js';

const BOOT_SECTOR_BYTES = 512;
/** §3.1 BPB_TotSec16 and BPB_TotSec32. */
const TOT_SEC16 = 19;
const TOT_SEC32 = 32;
/** §3.3 FAT32: BPB_ExtFlags (bit 7: mirroring off; bits 0–3: the active FAT), BPB_FSVer, BPB_FSInfo. */
const EXT_FLAGS = 40;
const EXT_FLAGS_NO_MIRROR = 0x80;
const EXT_FLAGS_ACTIVE_FAT = 0x0f;
const FS_VER = 42;
const FS_INFO_SECTOR = 48;
/**
 * BS_Reserved1 (§3.2 at 37, §3.3 at 65): Linux sets FAT_STATE_DIRTY there while the volume is
 * mounted read-write (fs/fat/inode.c); Windows NT uses the same bit for "run chkdsk".
 */
const STATE_FAT16 = 37;
const STATE_FAT32 = 65;
const STATE_DIRTY = 0x01;
/** §5 FSInfo: signatures at 0, 484, 508; FSI_Free_Count at 488; 0xFFFFFFFF means unknown. */
const FSI = { leadSig: 0, strucSig: 484, freeCount: 488, trailSig: 508 } as const;
const FSI_LEAD_SIG = 0x41615252;
const FSI_STRUC_SIG = 0x61417272;
const FSI_TRAIL_SIG = 0xaa550000;
const FSI_UNKNOWN = 0xffffffff;
/** FAT entries read per chunk (even, so that FAT12 chunks start on a byte): at most 1 MiB. */
const CHUNK_ENTRIES = 1 << 18;
/** Entries 0 and 1 are reserved (§4); clusters are numbered from 2. */
const FIRST_CLUSTER = 2;
const MEDIA_MASK = 0xff;
/** §3.5: a FAT32 volume has at most 0x0FFFFFF5 clusters, so cluster numbers stay below BAD. */
const FAT32_MAX_CLUSTERS = 0x0ffffff5;

/** §4 entry width and special values; FAT32 entries are 28 bits (the top 4 are reserved). */
interface EntryKind {
  readonly bits: 12 | 16 | 32;
  readonly mask: number;
  readonly bad: number;
  readonly endOfChainMin: number;
  /** FAT[1] ClnShutBitMask and HrdErrBitMask (§4); FAT12 has neither. */
  readonly cleanShutdownBit: number;
  readonly noHardErrorBit: number;
}

const KINDS: Record<FatBootSector['fatType'], EntryKind> = {
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
interface FatLayout {
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

function badImage(offsetBytes: number, what: string): SparsifyError {
  return new SparsifyError('BAD_IMAGE', `FAT at byte ${offsetBytes}: ${what}`, {
    hint: 'the FAT volume is damaged; run fsck.fat on it, or use --ignore to copy it as is',
  });
}

/** Bytes of FAT holding entries [0, entries). */
function entryBytes(kind: EntryKind, entries: number): number {
  return Math.ceil((entries * kind.bits) / 8);
}

/** Decodes the boot sector into a layout (§3); throws BAD_IMAGE when it cannot be used. */
function parseFatLayout(sector: Uint8Array): FatLayout {
  const bs = parseFatBootSector(sector);
  if (!bs) throw badImage(0, 'no valid boot sector (BPB)');
  const v = viewOf(sector);
  const totalSectors = v.getUint16(TOT_SEC16, true) || v.getUint32(TOT_SEC32, true);
  const clusterCount = Math.floor((totalSectors - bs.firstDataSector) / bs.sectorsPerCluster);
  const kind = KINDS[bs.fatType];
  const fatCopyBytes = bs.fatSectors * bs.bytesPerSector;
  if (clusterCount > FAT32_MAX_CLUSTERS) throw badImage(0, `${clusterCount} clusters are more than FAT32 can number`);
  const needed = entryBytes(kind, clusterCount + FIRST_CLUSTER);
  if (fatCopyBytes < needed) {
    const what = `${clusterCount} clusters need ${needed} bytes of FAT, it has ${fatCopyBytes}`;
    throw badImage(bs.reservedSectors * bs.bytesPerSector, what);
  }
  const extFlags = bs.fatType === 'FAT32' ? v.getUint16(EXT_FLAGS, true) : 0;
  const mirrored = (extFlags & EXT_FLAGS_NO_MIRROR) === 0;
  const activeFat = mirrored ? 0 : extFlags & EXT_FLAGS_ACTIVE_FAT;
  if (activeFat >= bs.fatCount) throw badImage(EXT_FLAGS, `BPB_ExtFlags names FAT ${activeFat} of ${bs.fatCount}`);
  return {
    bs,
    kind,
    sizeBytes: totalSectors * bs.bytesPerSector,
    clusterCount,
    clusterBytes: bs.sectorsPerCluster * bs.bytesPerSector,
    dataOffsetBytes: bs.firstDataSector * bs.bytesPerSector,
    fatCopyBytes,
    activeFat,
    mirrored,
  };
}

/** Why the boot sector alone says the map must not be used, or undefined. */
function bootSectorProblem(sector: Uint8Array, layout: FatLayout, volumeBytes: number): string | undefined {
  const fat32 = layout.bs.fatType === 'FAT32';
  if (sector[fat32 ? STATE_FAT32 : STATE_FAT16]! & STATE_DIRTY) {
    return 'FAT volume was not cleanly unmounted (dirty flag in the boot sector)';
  }
  const version = fat32 ? viewOf(sector).getUint16(FS_VER, true) : 0;
  if (version !== 0) return `FAT32 version ${version >> 8}.${version & 0xff} is not supported`;
  if (layout.sizeBytes > volumeBytes) {
    return `FAT boot sector says ${layout.sizeBytes} bytes but the volume has ${volumeBytes}`;
  }
  const root = layout.bs.rootCluster;
  if (fat32 && (root < FIRST_CLUSTER || root >= layout.clusterCount + FIRST_CLUSTER)) {
    return `FAT32 root directory cluster ${root} is outside the volume`;
  }
  return undefined;
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
async function scanFat(reader: BlockReader, layout: FatLayout): Promise<{ free: ExtentSet; scanner: FatScanner }> {
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

/** The FAT32 FSInfo free count when its signatures are there and it is known (§5), else undefined. */
async function readFsInfoFreeCount(
  reader: BlockReader,
  sector: Uint8Array,
  layout: FatLayout,
): Promise<number | undefined> {
  if (layout.bs.fatType !== 'FAT32') return undefined;
  const fsInfo = viewOf(sector).getUint16(FS_INFO_SECTOR, true);
  if (fsInfo < 1 || fsInfo >= layout.bs.reservedSectors) return undefined;
  const v = viewOf(await reader.read(fsInfo * layout.bs.bytesPerSector, BOOT_SECTOR_BYTES));
  const signed =
    v.getUint32(FSI.leadSig, true) === FSI_LEAD_SIG &&
    v.getUint32(FSI.strucSig, true) === FSI_STRUC_SIG &&
    v.getUint32(FSI.trailSig, true) === FSI_TRAIL_SIG;
  const count = v.getUint32(FSI.freeCount, true);
  return signed && count !== FSI_UNKNOWN ? count : undefined;
}

/** Cluster numbers → volume byte ranges in the data area (§3.5: cluster 2 is the first). */
function clustersToBytes(clusters: ExtentSet, layout: FatLayout): ExtentSet {
  const at = (cluster: number): number => layout.dataOffsetBytes + (cluster - FIRST_CLUSTER) * layout.clusterBytes;
  return ExtentSet.from(clusters.ranges.map((r) => ({ start: at(r.start), end: at(r.end) })));
}

/** Reads a FAT12/16/32 volume's free clusters from its own FAT; untrusted unless clean and consistent. */
export async function readFatFreeMap(reader: BlockReader): Promise<FreeMap> {
  if (reader.sizeBytes < BOOT_SECTOR_BYTES) {
    throw badImage(0, `volume of ${reader.sizeBytes} bytes has no boot sector`);
  }
  const sector = await reader.read(0, BOOT_SECTOR_BYTES);
  const layout = parseFatLayout(sector);
  const bootProblem = bootSectorProblem(sector, layout, reader.sizeBytes);
  if (bootProblem) return { trusted: false, reason: bootProblem };
  const { free, scanner } = await scanFat(reader, layout);
  if (scanner.problem) return { trusted: false, reason: scanner.problem };
  const fsInfoFree = await readFsInfoFreeCount(reader, sector, layout);
  const stale = fsInfoFree !== undefined && fsInfoFree !== scanner.freeClusters;
  const advisory = stale ? `; FSInfo says ${fsInfoFree} (advisory, not used)` : '';
  return {
    trusted: true,
    free: clustersToBytes(free, layout),
    unitBytes: layout.clusterBytes,
    counterFreeBytes: scanner.freeClusters * layout.clusterBytes,
    detail: `${layout.bs.fatType}: ${scanner.freeClusters} of ${layout.clusterCount} clusters free${advisory}`,
  };
}
