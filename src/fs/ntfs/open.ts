/**
 * Opening an NTFS volume for its metadata: the boot sector's geometry, then $MFT's own record 0
 * and its whole run list, so that any MFT record can be read (Linux-NTFS "Files: $MFT").
 */
import type { BlockReader } from '../../disk/types.js';
import { ATTR_TYPE, MFT_RECORD, badNtfs } from './common.js';
import { findAttributes, parseMftRecord, type MftRecord } from './record.js';
import { parseDataRuns } from './runs.js';
import { readAttributeStream } from './stream.js';
import { NtfsVolume, readNtfsGeometry, runStream } from './volume.js';

/** Records 0–15 are reserved for system files; a smaller $MFT is not NTFS. */
const MIN_MFT_RECORDS = 16;

/** Reads the geometry and $MFT's run list (through its attribute list if any); BAD_IMAGE when they do not decode. */
export async function openNtfsVolume(reader: BlockReader): Promise<NtfsVolume> {
  const geometry = await readNtfsGeometry(reader);
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
export async function readSystemRecord(volume: NtfsVolume, number: number): Promise<MftRecord> {
  const record = await volume.readRecord(number, volume.mft.where);
  if (!record.inUse || record.baseRecord !== 0) badNtfs(record.where, 0, 'system file record is not an in-use base record');
  return record;
}
