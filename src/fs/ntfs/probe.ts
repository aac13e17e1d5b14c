/**
 * NTFS detection: the boot sector BPB (as documented by the Linux-NTFS project, "NTFS
 * Documentation", and Microsoft's "NTFS boot sector" description) and the label of $Volume.
 * The pure boot-sector decoder also tells the layout reader that a 0x55AA sector is a
 * filesystem on the whole disk, not an MBR.
 */
import { hasAscii, isAllZero, isPowerOfTwo, u64le, utf16le, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { labelField, type Detected } from '../probe-common.js';
import type { ProbeResult } from '../types.js';

const BOOT_SECTOR_BYTES = 512;
const NTFS_OEM = 'NTFS    ';
/** Boot sector fields: the BPB (bytes per sector, sectors per cluster) and the NTFS extension. */
const BS = {
  oemId: 3,
  bytesPerSector: 0x0b,
  sectorsPerCluster: 0x0d,
  totalSectors: 0x28,
  mftLcn: 0x30,
  clustersPerMftRecord: 0x40,
  serial: 0x48,
} as const;
/** FAT fields an NTFS BPB leaves zero: reserved sectors … FAT count, root entries, sectors16, FAT size16, sectors32. */
const ZERO_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0x0e, 0x13 + 2],
  [0x16, 0x16 + 2],
  [0x20, 0x20 + 4],
];
const MIN_SECTOR_BYTES = 256;
const MAX_SECTOR_BYTES = 4096;
/** Sectors-per-cluster values above 0x80 encode 2^(256 − value) (clusters of 64 KiB and more). */
const SPC_EXPONENT_FLAG = 0x80;
/** MFT record header: "FILE", update sequence array offset and count, first attribute offset. */
const REC = { usaOffset: 4, usaCount: 6, firstAttribute: 0x14 } as const;
/** Attribute header: type, length, non-resident flag; resident value length and offset. */
const ATTR = { type: 0, length: 4, nonResident: 8, valueLength: 0x10, valueOffset: 0x14 } as const;
const ATTR_HEADER_BYTES = 24;
/** $Volume is MFT record 3; its VOLUME_NAME attribute (type 0x60) holds the label. */
const MFT_RECORD_VOLUME = 3;
const ATTR_VOLUME_NAME = 0x60;
const ATTR_END = 0xffffffff;
/** Update sequence fixups protect every 512-byte stride of an MFT record. */
const NTFS_FIXUP_STRIDE = 512;
const MAX_MFT_RECORD_BYTES = 65536;

/** The decoded NTFS boot sector. */
export interface NtfsBootSector {
  readonly bytesPerSector: number;
  readonly clusterBytes: number;
  readonly totalSectors: number;
  readonly mftOffsetBytes: number;
  readonly mftRecordBytes: number;
  readonly serial: bigint;
}

/** Decodes an NTFS boot sector; undefined when the OEM id or the BPB is wrong. */
export function parseNtfsBootSector(sector: Uint8Array): NtfsBootSector | undefined {
  if (sector.length < BOOT_SECTOR_BYTES || !hasAscii(sector, BS.oemId, NTFS_OEM)) return undefined;
  if (!ZERO_RANGES.every(([from, to]) => isAllZero(sector.subarray(from, to)))) return undefined;
  const v = viewOf(sector);
  const bytesPerSector = v.getUint16(BS.bytesPerSector, true);
  const spc = sector[BS.sectorsPerCluster]!;
  const sectorsPerCluster = spc <= SPC_EXPONENT_FLAG ? spc : 2 ** (256 - spc);
  const sectorOk =
    isPowerOfTwo(bytesPerSector) && bytesPerSector >= MIN_SECTOR_BYTES && bytesPerSector <= MAX_SECTOR_BYTES;
  if (!sectorOk || !isPowerOfTwo(sectorsPerCluster)) return undefined;
  const clusterBytes = bytesPerSector * sectorsPerCluster;
  // Positive: clusters per record; negative: the record is 2^(−value) bytes.
  const perRecord = v.getInt8(BS.clustersPerMftRecord);
  const mftRecordBytes = perRecord > 0 ? perRecord * clusterBytes : 2 ** -perRecord;
  const mftOffsetBytes = u64le(v, BS.mftLcn) * clusterBytes;
  const recordOk = mftRecordBytes >= NTFS_FIXUP_STRIDE && mftRecordBytes <= MAX_MFT_RECORD_BYTES;
  if (!recordOk || !Number.isSafeInteger(mftOffsetBytes)) return undefined;
  return {
    bytesPerSector,
    clusterBytes,
    totalSectors: u64le(v, BS.totalSectors),
    mftOffsetBytes,
    mftRecordBytes,
    serial: v.getBigUint64(BS.serial, true),
  };
}

/** Applies the update-sequence fixups of an MFT record in place; false when they do not match. */
export function applyMftFixups(record: Uint8Array): boolean {
  if (!hasAscii(record, 0, 'FILE')) return false;
  const v = viewOf(record);
  const usaOffset = v.getUint16(REC.usaOffset, true);
  const usaCount = v.getUint16(REC.usaCount, true);
  if (usaCount < 1 || usaOffset + usaCount * 2 > record.length || (usaCount - 1) * NTFS_FIXUP_STRIDE > record.length) {
    return false;
  }
  const usn = v.getUint16(usaOffset, true);
  for (let i = 1; i < usaCount; i++) {
    const end = i * NTFS_FIXUP_STRIDE - 2;
    if (v.getUint16(end, true) !== usn) return false;
    v.setUint16(end, v.getUint16(usaOffset + i * 2, true), true);
  }
  return true;
}

/** The VOLUME_NAME attribute of a fixed-up $Volume record (resident attributes only). */
function parseNtfsVolumeName(record: Uint8Array): string | undefined {
  const v = viewOf(record);
  let at = v.getUint16(REC.firstAttribute, true);
  while (at + ATTR_HEADER_BYTES <= record.length) {
    const type = v.getUint32(at + ATTR.type, true);
    const length = v.getUint32(at + ATTR.length, true);
    if (type === ATTR_END || length < ATTR_HEADER_BYTES || at + length > record.length) return undefined;
    if (type === ATTR_VOLUME_NAME && record[at + ATTR.nonResident] === 0) {
      const valueLength = v.getUint32(at + ATTR.valueLength, true);
      const valueOffset = v.getUint16(at + ATTR.valueOffset, true);
      if (valueOffset + valueLength > length) return undefined;
      return utf16le(record, at + valueOffset, valueLength) || undefined;
    }
    at += length;
  }
  return undefined;
}

/** NTFS by OEM id and BPB; UUID is the volume serial as blkid prints it; label from $Volume. */
export async function detectNtfs(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  const bs = parseNtfsBootSector(head);
  if (!bs) return undefined;
  const readRecord = async (n: number): Promise<Uint8Array | undefined> => {
    const at = bs.mftOffsetBytes + n * bs.mftRecordBytes;
    if (at + bs.mftRecordBytes > reader.sizeBytes) return undefined;
    const record = (await reader.read(at, bs.mftRecordBytes)).slice();
    return applyMftFixups(record) ? record : undefined;
  };
  const volume = await readRecord(MFT_RECORD_VOLUME);
  const label = volume ? parseNtfsVolumeName(volume) : undefined;
  const result: ProbeResult = {
    type: 'ntfs',
    uuid: bs.serial.toString(16).toUpperCase().padStart(16, '0'),
    blockSizeBytes: bs.clusterBytes,
    ...labelField(label),
  };
  return { result, magicOffsetBytes: BS.oemId, confirm: async () => (await readRecord(0)) !== undefined };
}
