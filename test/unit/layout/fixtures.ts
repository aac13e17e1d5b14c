/** Builders of synthetic disks for the layout and probe unit tests. */
import { crc32 } from '../../../src/binary/crc32.js';
import type { BlockReader } from '../../../src/disk/types.js';

/**
 * A BlockReader over a buffer: bounds-checked, and returning Node Buffers like the NBD client,
 * so a decoder that calls Buffer.slice (a view, not a copy) and writes into it is caught.
 */
export function memReader(bytes: Uint8Array): BlockReader & { reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = [];
  return {
    sizeBytes: bytes.length,
    reads,
    read(offsetBytes, lengthBytes) {
      reads.push([offsetBytes, lengthBytes]);
      if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > bytes.length) {
        return Promise.reject(new RangeError(`read ${offsetBytes}+${lengthBytes} outside ${bytes.length}`));
      }
      return Promise.resolve(Buffer.from(bytes.subarray(offsetBytes, offsetBytes + lengthBytes)));
    },
  };
}

export const MiB = 1024 * 1024;

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** XORs one byte: the tests' way of damaging a structure. */
export function flip(bytes: Uint8Array, offset: number, mask = 0xff): void {
  bytes[offset] = (bytes[offset] ?? 0) ^ mask;
}

export function putAscii(bytes: Uint8Array, offset: number, text: string): void {
  for (let i = 0; i < text.length; i++) bytes[offset + i] = text.charCodeAt(i);
}

/** Writes a GUID given as text in the EFI mixed-endian layout. */
export function putGuid(bytes: Uint8Array, offset: number, guid: string): void {
  const hex = guid.replace(/-/g, '');
  const raw = Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16));
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  order.forEach((src, i) => (bytes[offset + i] = raw[src]!));
}

export const LINUX_FS_GUID = '0fc63daf-8483-4772-8e79-3d69d8477de4';
export const ESP_GUID = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';

export interface MbrPart {
  slot: number;
  type: number;
  firstLba: number;
  sectors: number;
  status?: number;
}

/** Writes an MBR/EBR partition entry and the 0x55AA signature into the sector at `sectorLba`. */
export function putMbrEntries(disk: Uint8Array, sectorLba: number, parts: readonly MbrPart[]): void {
  const base = sectorLba * 512;
  for (const p of parts) {
    const at = base + 446 + p.slot * 16;
    disk[at] = p.status ?? 0;
    disk[at + 4] = p.type;
    view(disk).setUint32(at + 8, p.firstLba, true);
    view(disk).setUint32(at + 12, p.sectors, true);
  }
  disk[base + 510] = 0x55;
  disk[base + 511] = 0xaa;
}

export interface GptPart {
  index: number;
  firstLba: number;
  lastLba: number;
  type?: string;
  name?: string;
}

export interface GptOptions {
  sizeBytes: number;
  sectorBytes?: number;
  parts: readonly GptPart[];
  entryCount?: number;
  entrySize?: number;
}

/** Writes one GPT header at `myLba` and its entry array at `entriesLba`. */
function putGptCopy(
  disk: Uint8Array,
  o: Required<GptOptions>,
  myLba: number,
  altLba: number,
  entriesLba: number,
): void {
  const s = o.sectorBytes;
  const lastLba = disk.length / s - 1;
  const arrayBytes = o.entryCount * o.entrySize;
  const array = disk.subarray(entriesLba * s, entriesLba * s + arrayBytes);
  array.fill(0);
  for (const p of o.parts) {
    const at = p.index * o.entrySize;
    putGuid(array, at, p.type ?? LINUX_FS_GUID);
    putGuid(array, at + 16, `00000000-0000-0000-0000-${(p.index + 1).toString(16).padStart(12, '0')}`);
    view(array).setBigUint64(at + 32, BigInt(p.firstLba), true);
    view(array).setBigUint64(at + 40, BigInt(p.lastLba), true);
    const name = p.name ?? `part${p.index + 1}`;
    for (let i = 0; i < name.length; i++) view(array).setUint16(at + 56 + i * 2, name.charCodeAt(i), true);
  }
  const h = disk.subarray(myLba * s, myLba * s + s);
  h.fill(0);
  putAscii(h, 0, 'EFI PART');
  const v = view(h);
  v.setUint32(8, 0x00010000, true);
  v.setUint32(12, 92, true);
  v.setBigUint64(24, BigInt(myLba), true);
  v.setBigUint64(32, BigInt(altLba), true);
  const arraySectors = Math.ceil(arrayBytes / s);
  v.setBigUint64(40, BigInt(2 + arraySectors), true);
  v.setBigUint64(48, BigInt(lastLba - 1 - arraySectors), true);
  putGuid(h, 56, '11111111-2222-3333-4444-555555555555');
  v.setBigUint64(72, BigInt(entriesLba), true);
  v.setUint32(80, o.entryCount, true);
  v.setUint32(84, o.entrySize, true);
  v.setUint32(88, crc32(array), true);
  v.setUint32(16, crc32(h.subarray(0, 92)), true);
}

/** Rewrites the header CRC of the GPT header at `lba` after a test edited it. */
export function refreshGptHeaderCrc(disk: Uint8Array, lba: number, sectorBytes = 512): void {
  const h = disk.subarray(lba * sectorBytes, lba * sectorBytes + 92);
  view(h).setUint32(16, 0, true);
  view(h).setUint32(16, crc32(h), true);
}

/** A disk with a protective MBR and primary and backup GPTs (128 entries of 128 bytes). */
export function buildGptDisk(options: GptOptions): Uint8Array {
  const o: Required<GptOptions> = { sectorBytes: 512, entryCount: 128, entrySize: 128, ...options };
  const disk = new Uint8Array(o.sizeBytes);
  const s = o.sectorBytes;
  const lastLba = o.sizeBytes / s - 1;
  const arraySectors = Math.ceil((o.entryCount * o.entrySize) / s);
  putMbrEntries(disk, 0, [{ slot: 0, type: 0xee, firstLba: 1, sectors: Math.min(lastLba, 0xffffffff) }]);
  putGptCopy(disk, o, 1, lastLba, 2);
  putGptCopy(disk, o, lastLba, 1, lastLba - arraySectors);
  return disk;
}

/** A minimal valid FAT boot sector (the BPB and 0x55AA). */
export function putFatBootSector(
  disk: Uint8Array,
  o: {
    totalSectors: number;
    sectorsPerCluster: number;
    reserved: number;
    fatSectors: number;
    rootEntries: number;
    fat32?: boolean;
    label?: string;
    volumeId?: number;
  },
): void {
  disk.set([0xeb, 0x3c, 0x90], 0);
  putAscii(disk, 3, 'mkfs.fat');
  const v = view(disk);
  v.setUint16(11, 512, true);
  disk[13] = o.sectorsPerCluster;
  v.setUint16(14, o.reserved, true);
  disk[16] = 2;
  v.setUint16(17, o.rootEntries, true);
  if (o.totalSectors < 0x10000) v.setUint16(19, o.totalSectors, true);
  else v.setUint32(32, o.totalSectors, true);
  disk[21] = 0xf8;
  const ext = o.fat32 ? 64 : 36;
  if (o.fat32) {
    v.setUint32(36, o.fatSectors, true);
    v.setUint32(44, 2, true);
  } else {
    v.setUint16(22, o.fatSectors, true);
  }
  disk[ext + 2] = 0x29;
  v.setUint32(ext + 3, o.volumeId ?? 0x1234abcd, true);
  putAscii(disk, ext + 7, (o.label ?? 'NO NAME').padEnd(11, ' '));
  putAscii(disk, ext + 18, o.fat32 ? 'FAT32   ' : 'FAT16   ');
  disk[510] = 0x55;
  disk[511] = 0xaa;
  // FAT[0] and FAT[1] of each copy: media byte, then ones (fatgen103 §4).
  for (let copy = 0; copy < 2; copy++) {
    const at = (o.reserved + copy * o.fatSectors) * 512;
    disk.set(o.fat32 ? [0xf8, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0x0f] : [0xf8, 0xff, 0xff, 0xff], at);
  }
}
