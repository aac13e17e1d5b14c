/**
 * An attribute's whole value from its MFT record: one resident value, or the extents of a
 * non-resident attribute joined into one run list. When a file's attributes do not fit its
 * base record, an $ATTRIBUTE_LIST names, for every attribute extent, its lowest VCN and the
 * extension record that holds it (Linux-NTFS "Attributes: $ATTRIBUTE_LIST"; ntfs-3g layout.h
 * ATTR_LIST_ENTRY). Those lists are followed here, so a fragmented $MFT or $Bitmap whose run
 * list overflowed its record is read like any other.
 */
import { utf16le, viewOf } from '../../binary/bytes.js';
import { ATTR_TYPE, badNtfs, mftReference, s64le, type MftReference, type Where } from './common.js';
import { findAttributes, type MftRecord, type NonResidentAttribute } from './record.js';
import { parseDataRuns, runClusters, type DataRun } from './runs.js';
import { runStream, type NtfsVolume, type NtfsGeometry, type RunStream, type Stream } from './volume.js';

/** ATTR_LIST_ENTRY fields. */
const ALE = {
  type: 0x00,
  length: 0x04,
  nameLength: 0x06,
  nameOffset: 0x07,
  lowestVcn: 0x08,
  reference: 0x10,
} as const;
const ALE_MIN_BYTES = 0x1a;
/** An attribute list is at most 256 KiB (Linux-NTFS "$ATTRIBUTE_LIST"). */
const MAX_ATTRIBUTE_LIST_BYTES = 256 * 1024;

/** One entry of an $ATTRIBUTE_LIST. */
export interface AttributeListEntry {
  readonly type: number;
  readonly name: string;
  readonly lowestVcn: number;
  readonly reference: MftReference;
}

/** Decodes the entries of an attribute list value. */
export function parseAttributeList(bytes: Uint8Array, where: Where): AttributeListEntry[] {
  const view = viewOf(bytes);
  const entries: AttributeListEntry[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + ALE_MIN_BYTES > bytes.length) badNtfs(where, at, 'attribute list entry is truncated');
    const length = view.getUint16(at + ALE.length, true);
    if (length < ALE_MIN_BYTES || at + length > bytes.length) badNtfs(where, at + ALE.length, `attribute list entry length ${length} does not fit`);
    const nameLength = bytes[at + ALE.nameLength]!;
    const nameOffset = bytes[at + ALE.nameOffset]!;
    if (nameOffset + 2 * nameLength > length) badNtfs(where, at + ALE.nameOffset, 'attribute list entry name lies outside the entry');
    const lowestVcn = s64le(view, at + ALE.lowestVcn);
    if (lowestVcn === undefined || lowestVcn < 0) badNtfs(where, at + ALE.lowestVcn, 'attribute list entry has a negative lowest VCN');
    entries.push({
      type: view.getUint32(at + ALE.type, true),
      name: nameLength > 0 ? utf16le(bytes, at + nameOffset, 2 * nameLength) : '',
      lowestVcn,
      reference: mftReference(view, at + ALE.reference),
    });
    at += length;
  }
  return entries;
}

/** One extent of a non-resident attribute and the record that holds it (its runs decode there). */
export interface Extent {
  readonly record: MftRecord;
  readonly attribute: NonResidentAttribute;
}

/** Joins the extents of one non-resident attribute (any order) into a checked stream. */
function joinExtents(geometry: NtfsGeometry, extents: readonly Extent[]): RunStream {
  const sorted = [...extents].sort((a, b) => a.attribute.lowestVcn - b.attribute.lowestVcn);
  const first = sorted[0];
  if (!first || first.attribute.lowestVcn !== 0) {
    badNtfs(first?.record.where ?? { what: 'attribute', offsetBytes: 0 }, first?.attribute.offset ?? 0, 'attribute has no extent starting at VCN 0');
  }
  const runs: DataRun[] = [];
  let nextVcn = 0;
  for (const { record, attribute } of sorted) {
    const { lowestVcn, highestVcn, offset } = attribute;
    if (lowestVcn !== nextVcn) badNtfs(record.where, offset, `extent starts at VCN ${lowestVcn}, expected ${nextVcn}`);
    const extentRuns = parseDataRuns(record.bytes, attribute.runsStart, attribute.runsEnd, lowestVcn, record.where);
    const clusters = runClusters(extentRuns);
    if (clusters !== highestVcn - lowestVcn + 1) {
      badNtfs(record.where, offset, `data runs cover ${clusters} clusters, the header says VCN ${lowestVcn}..${highestVcn}`);
    }
    runs.push(...extentRuns);
    nextVcn = highestVcn + 1;
  }
  const head = first.attribute;
  if (head.dataBytes > nextVcn * geometry.clusterBytes) {
    badNtfs(first.record.where, head.offset, `data size ${head.dataBytes} is more than the ${nextVcn} clusters mapped`);
  }
  return runStream(geometry, first.record.where, runs, head);
}

/** The stream of one attribute found in `record` alone (no attribute list). */
function streamInRecord(geometry: NtfsGeometry, record: MftRecord, type: number, name: string): Stream | undefined {
  const found = findAttributes(record, type, name);
  const first = found[0];
  if (!first) return undefined;
  if (first.resident) {
    if (found.length > 1) badNtfs(record.where, first.offset, `attribute 0x${type.toString(16)} appears ${found.length} times`);
    return { resident: true, flags: first.flags, where: record.where, dataBytes: first.value.length, value: first.value };
  }
  const extents = found.map((attribute) => {
    if (attribute.resident) badNtfs(record.where, attribute.offset, 'attribute is both resident and non-resident');
    return { record, attribute };
  });
  return joinExtents(geometry, extents);
}

async function readListBytes(volume: NtfsVolume, record: MftRecord): Promise<Uint8Array | undefined> {
  const list = streamInRecord(volume.geometry, record, ATTR_TYPE.attributeList, '');
  if (!list) return undefined;
  if (list.dataBytes > MAX_ATTRIBUTE_LIST_BYTES) {
    badNtfs(record.where, 0, `attribute list of ${list.dataBytes} bytes is larger than NTFS allows`);
  }
  return volume.readStream(list, 0, list.dataBytes);
}

/** The extension (or base) record named by an attribute list entry, checked to belong to `base`. */
async function listedRecord(volume: NtfsVolume, base: MftRecord, entry: AttributeListEntry): Promise<MftRecord> {
  if (entry.reference.record === base.number) return base;
  const record = await volume.readRecord(entry.reference.record, base.where);
  const ok =
    record.inUse &&
    record.baseRecord === base.number &&
    (entry.reference.sequence === 0 || entry.reference.sequence === record.sequence);
  if (!ok) badNtfs(record.where, 0, `extension record does not belong to MFT record ${base.number}`);
  return record;
}

/**
 * The whole value of attribute (type, name) of the file whose base record is `record`, following
 * its $ATTRIBUTE_LIST; undefined when the file has no such attribute. Extension records are read
 * through `volume`'s $MFT.
 */
export async function readAttributeStream(
  volume: NtfsVolume,
  record: MftRecord,
  type: number,
  name: string,
): Promise<Stream | undefined> {
  const listBytes = await readListBytes(volume, record);
  if (!listBytes) return streamInRecord(volume.geometry, record, type, name);
  const entries = parseAttributeList(listBytes, { what: `attribute list of MFT record ${record.number}`, offsetBytes: record.where.offsetBytes })
    .filter((e) => e.type === type && e.name === name);
  if (entries.length === 0) return undefined;
  const extents: Extent[] = [];
  for (const entry of entries) {
    const holder = await listedRecord(volume, record, entry);
    const attribute = findAttributes(holder, type, name).find((a) => a.resident || a.lowestVcn === entry.lowestVcn);
    if (!attribute) badNtfs(holder.where, 0, `attribute 0x${type.toString(16)} listed at VCN ${entry.lowestVcn} is missing`);
    if (attribute.resident) {
      if (entries.length > 1) badNtfs(holder.where, attribute.offset, 'a resident attribute has several extents');
      return { resident: true, flags: attribute.flags, where: holder.where, dataBytes: attribute.value.length, value: attribute.value };
    }
    extents.push({ record: holder, attribute });
  }
  return joinExtents(volume.geometry, extents);
}
