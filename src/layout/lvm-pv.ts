/**
 * LVM2 physical volume label (lvm2 lib/label/label.h and lib/format_text/layout.h): a
 * 512-byte label in one of the first four sectors, "LABELONE" then "LVM2 001", followed by
 * the PV header with the PV UUID and the lists of data and metadata areas. Enough for the
 * probe; the metadata text itself is decoded elsewhere.
 */
import { hasAscii, u64le, viewOf } from '../binary/bytes.js';
import { crc32Update } from '../binary/crc32.js';
import { ExtentSet } from '../disk/extent-set.js';
import type { BlockReader } from '../disk/types.js';

/** The label sits in one of sectors 0–3 (LABEL_SCAN_SECTORS); pvcreate puts it in sector 1. */
export const LVM_LABEL_SECTOR_BYTES = 512;
const LABEL_SCAN_SECTORS = 4;
/** label_header: id[8] "LABELONE", sector_xl u64, crc_xl u32, offset_xl u32, type[8]. */
const LABEL_ID = 'LABELONE';
const LABEL = { sector: 8, crc: 16, crcFrom: 20, offset: 20, type: 24 } as const;
const LABEL_TYPE = 'LVM2 001';
const LABEL_HEADER_BYTES = 32;
/** lvm2 lib/misc/crc.c: the IEEE table, seeded with INITIAL_CRC, no final inversion. */
const LVM_INITIAL_CRC = 0xf597a6cf;
/** pv_header: pv_uuid[32] (ID_LEN), device_size_xl u64, then disk_locn {offset u64, size u64} lists. */
const PV_UUID_BYTES = 32;
const DISK_LOCN_BYTES = 16;
/** The UUID is shown in groups of 6-4-4-4-4-4-6 characters (lvm2 id_write_format). */
const UUID_GROUPS = [6, 4, 4, 4, 4, 4, 6];

/** A byte range of the PV (disk_locn). */
export interface PvArea {
  readonly offsetBytes: number;
  readonly sizeBytes: number;
}

/** What the LVM2 label of a physical volume says. */
export interface LvmPvLabel {
  /** Sector (0–3) the label was found in. */
  readonly labelSector: number;
  /** The PV UUID as lvm2 and blkid print it: 6-4-4-4-4-4-6 characters. */
  readonly pvUuid: string;
  /** Size recorded by pvcreate (0 when it did not record one). */
  readonly deviceSizeBytes: number;
  readonly dataAreas: readonly PvArea[];
  readonly metadataAreas: readonly PvArea[];
}

/** The LVM2 label checksum of a label sector (over bytes 20–511). */
export function lvmLabelCrc(sector: Uint8Array): number {
  return crc32Update(LVM_INITIAL_CRC, sector.subarray(LABEL.crcFrom, LVM_LABEL_SECTOR_BYTES));
}

/** Reads a zero-terminated disk_locn list starting at `at`; undefined when it runs off the sector. */
function parseAreas(sector: Uint8Array, at: number): { areas: PvArea[]; next: number } | undefined {
  const view = viewOf(sector);
  const areas: PvArea[] = [];
  for (let pos = at; pos + DISK_LOCN_BYTES <= sector.length; pos += DISK_LOCN_BYTES) {
    const offsetBytes = u64le(view, pos);
    const sizeBytes = u64le(view, pos + 8);
    if (offsetBytes === 0) return { areas, next: pos + DISK_LOCN_BYTES };
    areas.push({ offsetBytes, sizeBytes });
  }
  return undefined;
}

function formatPvUuid(raw: string): string {
  const groups: string[] = [];
  let at = 0;
  for (const n of UUID_GROUPS) {
    groups.push(raw.slice(at, at + n));
    at += n;
  }
  return groups.join('-');
}

/**
 * Decodes a label sector found at `sectorIndex`; undefined when it is not a valid LVM2 label
 * (wrong id or type, a sector number that is not its own, a bad checksum, a malformed header).
 */
export function parseLvmPvLabel(sector: Uint8Array, sectorIndex: number): LvmPvLabel | undefined {
  if (sector.length < LVM_LABEL_SECTOR_BYTES) return undefined;
  if (!hasAscii(sector, 0, LABEL_ID) || !hasAscii(sector, LABEL.type, LABEL_TYPE)) return undefined;
  const view = viewOf(sector);
  if (u64le(view, LABEL.sector) !== sectorIndex) return undefined;
  if (view.getUint32(LABEL.crc, true) !== lvmLabelCrc(sector)) return undefined;
  const pvAt = view.getUint32(LABEL.offset, true);
  if (pvAt < LABEL_HEADER_BYTES || pvAt + PV_UUID_BYTES + 8 > LVM_LABEL_SECTOR_BYTES) return undefined;
  const rawUuid = new TextDecoder('latin1').decode(sector.subarray(pvAt, pvAt + PV_UUID_BYTES));
  if (!/^[A-Za-z0-9!#]{32}$/.test(rawUuid)) return undefined;
  const data = parseAreas(sector, pvAt + PV_UUID_BYTES + 8);
  const metadata = data && parseAreas(sector, data.next);
  if (!data || !metadata) return undefined;
  return {
    labelSector: sectorIndex,
    pvUuid: formatPvUuid(rawUuid),
    deviceSizeBytes: u64le(view, pvAt + PV_UUID_BYTES),
    dataAreas: data.areas,
    metadataAreas: metadata.areas,
  };
}

/** Scans the label sectors held in `head` (the volume's first bytes) for an LVM2 label. */
export function findLvmPvLabel(head: Uint8Array): LvmPvLabel | undefined {
  const sectors = Math.min(LABEL_SCAN_SECTORS, Math.floor(head.length / LVM_LABEL_SECTOR_BYTES));
  for (let i = 0; i < sectors; i++) {
    const label = parseLvmPvLabel(head.subarray(i * LVM_LABEL_SECTOR_BYTES, (i + 1) * LVM_LABEL_SECTOR_BYTES), i);
    if (label) return label;
  }
  return undefined;
}

/** Looks for an LVM2 label in the first four sectors of a volume; undefined when there is none. */
export async function probeLvmPv(reader: BlockReader): Promise<LvmPvLabel | undefined> {
  const bytes = Math.min(LABEL_SCAN_SECTORS * LVM_LABEL_SECTOR_BYTES, reader.sizeBytes);
  return findLvmPvLabel(await reader.read(0, bytes - (bytes % LVM_LABEL_SECTOR_BYTES)));
}

/**
 * The bytes of the PV that hold LVM's own structures: the label sector and every metadata area
 * whole (each is a circular buffer: any of its bytes may hold the next text), clipped to the PV.
 */
export function lvmStructureRanges(label: LvmPvLabel, pvSizeBytes: number): ExtentSet {
  const labelAt = label.labelSector * LVM_LABEL_SECTOR_BYTES;
  const areas = label.metadataAreas.map((a) => ({ start: a.offsetBytes, end: a.offsetBytes + a.sizeBytes }));
  return ExtentSet.from([{ start: labelAt, end: labelAt + LVM_LABEL_SECTOR_BYTES }, ...areas]).clip(pvSizeBytes);
}
