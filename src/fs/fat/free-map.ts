/**
 * The free space of a FAT12/16/32 volume, read from its own FAT without mounting (Microsoft
 * "FAT: General Overview of On-Disk Format" 1.03, fatgen103). A cluster is free when its FAT
 * entry is 0 (§4); reserved sectors, FATs, the FAT12/16 root directory and the sectors after
 * the last cluster are never free. Entries are decoded by table.ts; the boot sector by
 * probe.ts.
 *
 * Errors: BAD_IMAGE when the structures cannot be decoded at all (no valid BPB, a FAT too
 * small for the count of clusters, an active FAT that does not exist). Untrusted when they
 * decode but say the volume is not clean or not consistent: dirty flags, FAT copies that
 * differ, entries that are no cluster, chains that run into free clusters, a filesystem larger
 * than its volume. The FSInfo free count is advisory (§5: "not necessarily correct") and only
 * reported, never trusted or required to agree.
 */
import { viewOf } from '../../binary/bytes.js';
import { ExtentSet } from '../../disk/extent-set.js';
import type { BlockReader } from '../../disk/types.js';
import { SparsifyError } from '../../errors.js';
import { entryBytes, FIRST_CLUSTER, KINDS, scanFat, type FatLayout } from './table.js';
import { parseFatBootSector } from './probe.js';
import type { FreeMap } from '../types.js';

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
/** §3.5: a FAT32 volume has at most 0x0FFFFFF5 clusters, so cluster numbers stay below BAD. */
const FAT32_MAX_CLUSTERS = 0x0ffffff5;

function badImage(offsetBytes: number, what: string): SparsifyError {
  return new SparsifyError('BAD_IMAGE', `FAT at byte ${offsetBytes}: ${what}`, {
    hint: 'the FAT volume is damaged; run fsck.fat on it, or use --ignore to copy it as is',
  });
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
