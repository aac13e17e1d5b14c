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
import { LOGFILE_SCAN_BYTES, MIN_LOGFILE_BYTES, parseLogFileState } from './logfile.js';
import { readHibernationReason } from './hiberfil.js';
import { findAttributes, parseMftRecord, type MftRecord } from './record.js';
import { parseDataRuns } from './runs.js';
import { readAttributeStream } from './stream.js';
import { NtfsVolume, readNtfsGeometry, runStream, type NtfsGeometry, type Stream } from './volume.js';

/** $VOLUME_INFORMATION value: major and minor version, flags (layout.h VOLUME_INFORMATION). */
const VI = { major: 0x08, minor: 0x09, flags: 0x0a } as const;
const VI_BYTES = 0x0c;
/** VOLUME_FLAGS that forbid trusting the on-disk maps. */
const VOLUME_IS_DIRTY = 0x0001;
const VOLUME_CHKDSK_UNDERWAY = 0x4000;
const SUPPORTED_MAJOR_VERSIONS: readonly number[] = [1, 3];
/** Records 0–15 are reserved for system files; a smaller $MFT is not NTFS. */
const MIN_MFT_RECORDS = 16;
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
  const geometry = await readNtfsGeometry(reader);
  const volume = await openMft(reader, geometry);
  const version = await checkVolumeInformation(volume);
  const logFile = await checkLogFile(volume);
  const hibernation = await readHibernationReason(volume);
  if (hibernation) untrusted(hibernation);
  const bitmap = await openBitmap(volume);
  const freeClusters = await readFreeClusters(volume, bitmap);
  checkMetadataIsUsed(volume, freeClusters, { $LogFile: logFile, $Bitmap: bitmap });
  const clusterBytes = geometry.clusterBytes;
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

/** Reads $MFT's record 0 where the boot sector says, then its whole run list (through its attribute list if any). */
async function openMft(reader: BlockReader, geometry: NtfsGeometry): Promise<NtfsVolume> {
  const offsetBytes = geometry.mftLcn * geometry.clusterBytes;
  const where = { what: `MFT record ${MFT_RECORD.mft}`, offsetBytes };
  if (offsetBytes + geometry.mftRecordBytes > reader.sizeBytes) badNtfs(where, 0, 'record lies beyond the volume');
  const record = parseMftRecord(await reader.read(offsetBytes, geometry.mftRecordBytes), MFT_RECORD.mft, offsetBytes);
  if (!record.inUse) badNtfs(where, 0, '$MFT record is not in use');
  const head = findAttributes(record, ATTR_TYPE.data, '').find((a) => !a.resident && a.lowestVcn === 0);
  if (!head || head.resident) badNtfs(where, 0, '$MFT has no non-resident $DATA starting at VCN 0');
  // Bootstrap: the first extent alone maps the records an attribute list may point to.
  const firstRuns = parseDataRuns(record.bytes, head.runsStart, head.runsEnd, 0, record.where);
  const bootstrap = new NtfsVolume(reader, geometry, runStream(geometry, record.where, firstRuns, head));
  const mft = await readAttributeStream(bootstrap, record, ATTR_TYPE.data, '');
  if (!mft || mft.resident) badNtfs(where, 0, '$MFT has no non-resident $DATA');
  if (mft.runs[0]?.lcn !== geometry.mftLcn) badNtfs(where, 0, `$MFT does not start at LCN ${geometry.mftLcn} as the boot sector says`);
  const volume = new NtfsVolume(reader, geometry, mft);
  if (volume.recordCount < MIN_MFT_RECORDS) badNtfs(where, 0, `$MFT holds only ${volume.recordCount} records`);
  return volume;
}

/** Reads a system file's base record, which must be in use. */
async function systemRecord(volume: NtfsVolume, number: number): Promise<MftRecord> {
  const record = await volume.readRecord(number, volume.mft.where);
  if (!record.inUse || record.baseRecord !== 0) badNtfs(record.where, 0, 'system file record is not an in-use base record');
  return record;
}

/** $Volume's version and flags; returns "major.minor". */
async function checkVolumeInformation(volume: NtfsVolume): Promise<string> {
  const record = await systemRecord(volume, MFT_RECORD.volume);
  const info = await readAttributeStream(volume, record, ATTR_TYPE.volumeInformation, '');
  if (!info?.resident || info.value.length < VI_BYTES) badNtfs(record.where, 0, '$Volume has no resident $VOLUME_INFORMATION');
  const [major, minor] = [info.value[VI.major]!, info.value[VI.minor]!];
  const flags = info.value[VI.flags]! | (info.value[VI.flags + 1]! << 8);
  if (!SUPPORTED_MAJOR_VERSIONS.includes(major)) untrusted(`NTFS version ${major}.${minor} is not supported`);
  if (flags & VOLUME_IS_DIRTY) untrusted('the volume dirty flag is set: Windows did not shut down cleanly or chkdsk is scheduled');
  if (flags & VOLUME_CHKDSK_UNDERWAY) untrusted('chkdsk was interrupted on this volume');
  return `${major}.${minor}`;
}

/** The $LogFile stream, after checking that its restart area is clean. */
async function checkLogFile(volume: NtfsVolume): Promise<Stream> {
  const record = await systemRecord(volume, MFT_RECORD.logFile);
  const log = await readAttributeStream(volume, record, ATTR_TYPE.data, '');
  if (!log || log.resident) badNtfs(record.where, 0, '$LogFile has no non-resident $DATA');
  if (log.dataBytes < MIN_LOGFILE_BYTES) untrusted(`$LogFile is only ${log.dataBytes} bytes`);
  const head = await volume.readStream(log, 0, Math.min(log.dataBytes, LOGFILE_SCAN_BYTES));
  const state = parseLogFileState(head, { what: '$LogFile', offsetBytes: volume.volumeOffset(log, 0) });
  if (!state.clean) untrusted(state.reason);
  return log;
}

/** $Bitmap's $DATA, checked to hold an initialized bit for every cluster. */
async function openBitmap(volume: NtfsVolume): Promise<Stream> {
  const record = await systemRecord(volume, MFT_RECORD.bitmap);
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
