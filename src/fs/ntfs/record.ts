/**
 * MFT records and their attributes: pure decoders over one record's bytes. Layouts from the
 * Linux-NTFS project's "NTFS Documentation" ("Concepts: File Record", "Attribute Header") and
 * ntfs-3g layout.h (MFT_RECORD, ATTR_RECORD). Every offset and length read from the record is
 * checked against the record before use.
 */
import { hasAscii, utf16le, viewOf } from '../../binary/bytes.js';
import { applyMftFixups } from './probe.js';
import { ATTR_TYPE, NTFS_BLOCK_BYTES, badNtfs, mftReference, s64le, type Where } from './common.js';

/** MFT_RECORD header fields. */
const REC = {
  usaOffset: 0x04,
  usaCount: 0x06,
  sequence: 0x10,
  attrsOffset: 0x14,
  flags: 0x16,
  bytesInUse: 0x18,
  bytesAllocated: 0x1c,
  baseRecord: 0x20,
  /** NTFS 3.1 only: the record's own number, present when the update sequence array starts at 0x30 or later. */
  recordNumber: 0x2c,
} as const;
const REC_HEADER_BYTES = 0x2a;
const REC_HEADER_31_BYTES = 0x30;
/** MFT_RECORD_FLAGS. */
const RECORD_IN_USE = 0x0001;
const RECORD_IS_DIRECTORY = 0x0002;

/** ATTR_RECORD fields, common part then resident and non-resident parts. */
const ATTR = {
  type: 0x00,
  length: 0x04,
  nonResident: 0x08,
  nameLength: 0x09,
  nameOffset: 0x0a,
  flags: 0x0c,
  valueLength: 0x10,
  valueOffset: 0x14,
  lowestVcn: 0x10,
  highestVcn: 0x18,
  mappingPairsOffset: 0x20,
  allocatedSize: 0x28,
  dataSize: 0x30,
  initializedSize: 0x38,
} as const;
const RESIDENT_HEADER_BYTES = 0x18;
const NON_RESIDENT_HEADER_BYTES = 0x40;
const ATTR_ALIGN = 8;

interface AttributeCommon {
  readonly type: number;
  readonly name: string;
  readonly flags: number;
  /** Offset of the attribute in its record. */
  readonly offset: number;
  readonly length: number;
}

/** An attribute whose value lives in the record. */
export interface ResidentAttribute extends AttributeCommon {
  readonly resident: true;
  readonly value: Uint8Array;
}

/** An attribute whose value lives in clusters named by its mapping pairs (one extent of it). */
export interface NonResidentAttribute extends AttributeCommon {
  readonly resident: false;
  readonly lowestVcn: number;
  /** −1 for an empty attribute. */
  readonly highestVcn: number;
  /** Sizes are meaningful only in the extent whose lowest VCN is 0. */
  readonly allocatedBytes: number;
  readonly dataBytes: number;
  readonly initializedBytes: number;
  /** Where the mapping pairs lie in the record: [start, end). */
  readonly runsStart: number;
  readonly runsEnd: number;
}

/** One attribute record of an MFT record. */
export type Attribute = ResidentAttribute | NonResidentAttribute;

/** A fixed-up MFT record. */
export interface MftRecord {
  readonly number: number;
  readonly where: Where;
  readonly bytes: Uint8Array;
  readonly inUse: boolean;
  readonly isDirectory: boolean;
  readonly sequence: number;
  /** The base record's number for an extension record, 0 for a base record. */
  readonly baseRecord: number;
  readonly attributes: readonly Attribute[];
}

/** Checks the update sequence array header of a multi-sector protected record of `length` bytes. */
function checkUpdateSequence(view: DataView, length: number, where: Where, headerBytes: number): void {
  const usaOffset = view.getUint16(REC.usaOffset, true);
  const usaCount = view.getUint16(REC.usaCount, true);
  const expected = length / NTFS_BLOCK_BYTES + 1;
  if (usaCount !== expected) badNtfs(where, REC.usaCount, `update sequence count ${usaCount} is not ${expected}`);
  if (usaOffset < headerBytes || usaOffset % 2 !== 0 || usaOffset + 2 * usaCount > NTFS_BLOCK_BYTES - 2) {
    badNtfs(where, REC.usaOffset, `update sequence array offset ${usaOffset} is outside the header`);
  }
}

/**
 * Applies the update sequence ("fixups") of a protected record other than FILE (INDX, RSTR):
 * the last two bytes of every 512-byte stride must hold the update sequence number and are
 * replaced by the saved values. Returns false on a mismatch (a torn write).
 */
export function applyUpdateSequence(bytes: Uint8Array, where: Where, headerBytes: number): boolean {
  const view = viewOf(bytes);
  checkUpdateSequence(view, bytes.length, where, headerBytes);
  const usaOffset = view.getUint16(REC.usaOffset, true);
  const usn = view.getUint16(usaOffset, true);
  for (let i = 1; i * NTFS_BLOCK_BYTES <= bytes.length; i++) {
    const end = i * NTFS_BLOCK_BYTES - 2;
    if (view.getUint16(end, true) !== usn) return false;
    view.setUint16(end, view.getUint16(usaOffset + 2 * i, true), true);
  }
  return true;
}

/** Decodes the MFT record `number` from `raw` (not modified) read at volume byte `offsetBytes`. */
export function parseMftRecord(raw: Uint8Array, number: number, offsetBytes: number): MftRecord {
  const where: Where = { what: `MFT record ${number}`, offsetBytes };
  const bytes = raw.slice();
  if (hasAscii(bytes, 0, 'BAAD')) badNtfs(where, 0, 'record is marked BAAD (a multi-sector transfer failed)');
  if (!hasAscii(bytes, 0, 'FILE')) badNtfs(where, 0, 'no FILE signature');
  const view = viewOf(bytes);
  checkUpdateSequence(view, bytes.length, where, REC_HEADER_BYTES);
  if (!applyMftFixups(bytes)) badNtfs(where, 0, 'update sequence mismatch (torn write)');
  const usaOffset = view.getUint16(REC.usaOffset, true);
  if (usaOffset >= REC_HEADER_31_BYTES && view.getUint32(REC.recordNumber, true) !== number % 2 ** 32) {
    badNtfs(where, REC.recordNumber, `record says it is number ${view.getUint32(REC.recordNumber, true)}`);
  }
  const allocated = view.getUint32(REC.bytesAllocated, true);
  if (allocated !== bytes.length) badNtfs(where, REC.bytesAllocated, `allocated size ${allocated} is not the record size ${bytes.length}`);
  const inUseBytes = view.getUint32(REC.bytesInUse, true);
  if (inUseBytes > bytes.length) badNtfs(where, REC.bytesInUse, `${inUseBytes} bytes in use in a ${bytes.length}-byte record`);
  const attrsOffset = view.getUint16(REC.attrsOffset, true);
  if (attrsOffset < usaOffset + 2 * view.getUint16(REC.usaCount, true) || attrsOffset % ATTR_ALIGN !== 0 || attrsOffset >= inUseBytes) {
    badNtfs(where, REC.attrsOffset, `first attribute offset ${attrsOffset} is outside the bytes in use`);
  }
  const flags = view.getUint16(REC.flags, true);
  return {
    number,
    where,
    bytes,
    inUse: (flags & RECORD_IN_USE) !== 0,
    isDirectory: (flags & RECORD_IS_DIRECTORY) !== 0,
    sequence: view.getUint16(REC.sequence, true),
    baseRecord: mftReference(view, REC.baseRecord).record,
    attributes: parseAttributes(bytes, attrsOffset, inUseBytes, where),
  };
}

/** Walks the attributes in `bytes[start, limit)` up to the end marker. */
export function parseAttributes(bytes: Uint8Array, start: number, limit: number, where: Where): Attribute[] {
  const view = viewOf(bytes);
  const attributes: Attribute[] = [];
  let at = start;
  for (;;) {
    if (at + 4 > limit) badNtfs(where, at, 'attributes run past the bytes in use without an end marker');
    if (view.getUint32(at + ATTR.type, true) === ATTR_TYPE.end) return attributes;
    if (at + RESIDENT_HEADER_BYTES > limit) badNtfs(where, at, 'attribute header is truncated');
    const length = view.getUint32(at + ATTR.length, true);
    if (length < RESIDENT_HEADER_BYTES || length % ATTR_ALIGN !== 0 || at + length > limit) {
      badNtfs(where, at + ATTR.length, `attribute length ${length} does not fit the record`);
    }
    attributes.push(parseAttribute(bytes, view, at, length, where));
    at += length;
  }
}

function parseAttribute(bytes: Uint8Array, view: DataView, at: number, length: number, where: Where): Attribute {
  const nonResident = bytes[at + ATTR.nonResident]!;
  if (nonResident > 1) badNtfs(where, at + ATTR.nonResident, `non-resident flag ${nonResident} is neither 0 nor 1`);
  const nameLength = bytes[at + ATTR.nameLength]!;
  const nameOffset = view.getUint16(at + ATTR.nameOffset, true);
  if (nameLength > 0 && nameOffset + 2 * nameLength > length) badNtfs(where, at + ATTR.nameOffset, 'attribute name lies outside the attribute');
  const common: AttributeCommon = {
    type: view.getUint32(at + ATTR.type, true),
    name: nameLength > 0 ? utf16le(bytes, at + nameOffset, 2 * nameLength) : '',
    flags: view.getUint16(at + ATTR.flags, true),
    offset: at,
    length,
  };
  return nonResident === 0 ? parseResident(bytes, view, common, where) : parseNonResident(view, common, where);
}

function parseResident(bytes: Uint8Array, view: DataView, common: AttributeCommon, where: Where): ResidentAttribute {
  const at = common.offset;
  const valueLength = view.getUint32(at + ATTR.valueLength, true);
  const valueOffset = view.getUint16(at + ATTR.valueOffset, true);
  if (valueOffset + valueLength > common.length) badNtfs(where, at + ATTR.valueLength, 'resident value lies outside the attribute');
  return { ...common, resident: true, value: bytes.subarray(at + valueOffset, at + valueOffset + valueLength) };
}

function parseNonResident(view: DataView, common: AttributeCommon, where: Where): NonResidentAttribute {
  const at = common.offset;
  if (common.length < NON_RESIDENT_HEADER_BYTES) badNtfs(where, at + ATTR.length, 'non-resident attribute header is truncated');
  const field = (offset: number, name: string, min: number): number => {
    const value = s64le(view, at + offset);
    if (value === undefined || value < min) badNtfs(where, at + offset, `${name} ${view.getBigInt64(at + offset, true)} is out of range`);
    return value;
  };
  const lowestVcn = field(ATTR.lowestVcn, 'lowest VCN', 0);
  const highestVcn = field(ATTR.highestVcn, 'highest VCN', lowestVcn - 1);
  const runsStart = view.getUint16(at + ATTR.mappingPairsOffset, true);
  if (runsStart < NON_RESIDENT_HEADER_BYTES || runsStart > common.length) {
    badNtfs(where, at + ATTR.mappingPairsOffset, `mapping pairs offset ${runsStart} lies outside the attribute`);
  }
  return {
    ...common,
    resident: false,
    lowestVcn,
    highestVcn,
    allocatedBytes: field(ATTR.allocatedSize, 'allocated size', 0),
    dataBytes: field(ATTR.dataSize, 'data size', 0),
    initializedBytes: field(ATTR.initializedSize, 'initialized size', 0),
    runsStart: at + runsStart,
    runsEnd: at + common.length,
  };
}

/** The attributes of `record` with this type and name (names compare exactly, as NTFS stores them). */
export function findAttributes(record: MftRecord, type: number, name: string): Attribute[] {
  return record.attributes.filter((a) => a.type === type && a.name === name);
}
