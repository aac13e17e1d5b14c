/**
 * The map engine's NTFS reader: the free clusters of a volume from its own $Bitmap, without
 * mounting it. The path (Linux-NTFS project, "NTFS Documentation"; ntfs-3g layout.h):
 * boot sector → cluster size, $MFT location, record size; MFT record 0 ($MFT) → the MFT's own
 * data runs; record 6 ($Bitmap) → its unnamed $DATA runs (following an $ATTRIBUTE_LIST when the
 * run list overflowed the record) → one bit per cluster.
 *
 * The map is trusted only when the volume was left consistent, checked as ntfs-3g checks before
 * a read-write mount, plus cross-checks of the bitmap against the metadata it must cover:
 *
 * - $Volume (record 3) $VOLUME_INFORMATION: VOLUME_IS_DIRTY or VOLUME_CHKDSK_UNDERWAY set, or a
 *   version other than 1.x/3.x → untrusted;
 * - $LogFile (record 2): not empty and its current restart area not clean, or a version 2.0 log
 *   (Windows 8+ Fast Startup / hibernation) → untrusted (see logfile.ts);
 * - /hiberfil.sys found through the root directory index, starting with hibr/HIBR/wake/WAKE or
 *   shorter than 4096 bytes → untrusted (see hiberfil.ts);
 * - MFT record size other than 1, 2 or 4 KiB, a boot sector claiming more sectors than the
 *   volume holds, a $Bitmap that is compressed, encrypted or sparse, shorter than one bit per
 *   cluster or not initialized that far → untrusted;
 * - a cluster of $Boot, $MFT, $MFTMirr, $LogFile or $Bitmap itself marked free → untrusted.
 *
 * Structures that do not decode throw SparsifyError BAD_IMAGE naming the structure and the
 * volume byte ("ntfs MFT record 6 at byte N: …"). NTFS keeps no free-cluster counter on disk
 * (ntfs-3g and Windows count the bitmap at mount), so `counterFreeBytes` is the bitmap's own
 * count; the cross-checks above stand in for a counter comparison.
 *
 * Free bytes lie in [0, clusterCount × clusterSize): the sectors past the last whole cluster,
 * the backup boot sector in the volume's last sector and any slack behind the filesystem are
 * never reported free.
 */
import { ExtentSet, type Range } from '../../disk/extent-set.js';
import type { BlockReader } from '../../disk/types.js';
import type { FreeMap } from '../types.js';
import { FreeClusterCollector } from './bitmap.js';
import { ATTR_FLAG, ATTR_TYPE, MFT_RECORD, NtfsUntrusted, badNtfs, untrusted } from './common.js';
import { openNtfsVolume, readSystemRecord } from './open.js';
import { readNtfsVolumeState } from './state.js';
import { readAttributeStream } from './stream.js';
import type { NtfsVolume, Stream } from './volume.js';

/** $Boot, the boot sector and its loader, is 8 KiB at LCN 0. */
const BOOT_FILE_BYTES = 8192;
/** The bitmap is read in chunks of this size. */
const BITMAP_CHUNK_BYTES = 1024 * 1024;

/** Reads the free clusters of the NTFS volume `reader` covers; BAD_IMAGE when its metadata does not decode. */
export async function readNtfsFreeMap(reader: BlockReader): Promise<FreeMap> {
  try {
    return await readMap(reader);
  } catch (err) {
    if (err instanceof NtfsUntrusted) return { trusted: false, reason: err.message };
    throw err;
  }
}

async function readMap(reader: BlockReader): Promise<FreeMap> {
  const volume = await openNtfsVolume(reader);
  const { version, logFile, findings } = await readNtfsVolumeState(volume);
  if (findings[0]) untrusted(findings[0].reason);
  const bitmap = await openBitmap(volume);
  const freeClusters = await readFreeClusters(volume, bitmap);
  checkMetadataIsUsed(volume, freeClusters, { $LogFile: logFile, $Bitmap: bitmap });
  const clusterBytes = volume.geometry.clusterBytes;
  const free = ExtentSet.from(freeClusters.ranges.map((r) => ({ start: r.start * clusterBytes, end: r.end * clusterBytes })));
  const runs = bitmap.resident ? 'resident' : `${bitmap.runs.length} run${bitmap.runs.length === 1 ? '' : 's'}`;
  return {
    trusted: true,
    free,
    unitBytes: clusterBytes,
    counterFreeBytes: free.totalBytes,
    detail: `NTFS ${version}, ${clusterBytes}-byte clusters, $Bitmap in ${runs}`,
  };
}

/** $Bitmap's $DATA, checked to hold an initialized bit for every cluster. */
async function openBitmap(volume: NtfsVolume): Promise<Stream> {
  const record = await readSystemRecord(volume, MFT_RECORD.bitmap);
  const bitmap = await readAttributeStream(volume, record, ATTR_TYPE.data, '');
  if (!bitmap) badNtfs(record.where, 0, '$Bitmap has no unnamed $DATA');
  if (bitmap.flags & (ATTR_FLAG.compressionMask | ATTR_FLAG.encrypted | ATTR_FLAG.sparse)) {
    untrusted(`$Bitmap is compressed, encrypted or sparse (attribute flags 0x${bitmap.flags.toString(16)})`);
  }
  const neededBytes = Math.ceil(volume.geometry.clusterCount / 8);
  if (bitmap.dataBytes < neededBytes) {
    untrusted(`$Bitmap holds ${bitmap.dataBytes * 8} bits for ${volume.geometry.clusterCount} clusters`);
  }
  if (!bitmap.resident && bitmap.initializedBytes < neededBytes) {
    untrusted(`$Bitmap is initialized for ${bitmap.initializedBytes * 8} of ${volume.geometry.clusterCount} clusters`);
  }
  return bitmap;
}

/** The free clusters, as cluster-number ranges. */
async function readFreeClusters(volume: NtfsVolume, bitmap: Stream): Promise<ExtentSet> {
  const neededBytes = Math.ceil(volume.geometry.clusterCount / 8);
  const collector = new FreeClusterCollector(volume.geometry.clusterCount);
  for (let offset = 0; offset < neededBytes; offset += BITMAP_CHUNK_BYTES) {
    collector.add(await volume.readStream(bitmap, offset, Math.min(BITMAP_CHUNK_BYTES, neededBytes - offset)));
  }
  return ExtentSet.from(collector.finish());
}

function clustersOf(stream: Stream): Range[] {
  if (stream.resident) return [];
  return stream.runs.flatMap((r) => (r.lcn === undefined ? [] : [{ start: r.lcn, end: r.lcn + r.clusters }]));
}

/** Untrusted when the bitmap marks free a cluster the metadata just read occupies. */
function checkMetadataIsUsed(volume: NtfsVolume, freeClusters: ExtentSet, streams: Record<string, Stream>): void {
  const { clusterBytes, mftMirrLcn } = volume.geometry;
  const owners: Record<string, Range[]> = {
    $Boot: [{ start: 0, end: Math.ceil(BOOT_FILE_BYTES / clusterBytes) }],
    $MFT: clustersOf(volume.mft),
    $MFTMirr: [{ start: mftMirrLcn, end: mftMirrLcn + 1 }],
    ...Object.fromEntries(Object.entries(streams).map(([name, stream]) => [name, clustersOf(stream)])),
  };
  for (const [name, ranges] of Object.entries(owners)) {
    const wrong = freeClusters.intersect(ExtentSet.from(ranges)).ranges[0];
    if (wrong) untrusted(`$Bitmap marks cluster ${wrong.start} of ${name} free`);
  }
}
