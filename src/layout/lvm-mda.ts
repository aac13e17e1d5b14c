/**
 * LVM2 metadata areas (lvm2 lib/format_text/layout.h, format-text.c): each area starts with a
 * 512-byte mda_header — checksum u32 (over bytes 4–511), magic[16] " LVM2 x[5A%r0N*>",
 * version u32 (1), start u64 (the area's offset in the PV), size u64 (the area's size), then
 * raw_locn slots {offset u64, size u64, checksum u32, flags u32}, slot 0 being the committed
 * metadata. The rest of the area is a circular buffer of metadata texts: a text that runs past
 * the end continues right after the header. Checksums use lvm2's CRC (see lvm-pv.ts).
 */
import { hasAscii, u64le, viewOf } from '../binary/bytes.js';
import { crc32Update } from '../binary/crc32.js';
import { SparsifyError } from '../errors.js';
import type { BlockReader } from '../disk/types.js';
import type { PvArea } from './lvm-pv.js';

export const MDA_HEADER_BYTES = 512;
const MDA_MAGIC = ' LVM2 x[5A%r0N*>';
const MDA_VERSION = 1;
const MDA = { checksum: 0, magic: 4, version: 20, start: 24, size: 32, rawLocn: 40 } as const;
const RAW_LOCN = { offset: 0, size: 8, checksum: 16, flags: 20 } as const;
/** RAW_LOCN_IGNORED: `pvchange --metadataignore y`; the area is kept but not used. */
const RAW_LOCN_IGNORED = 1;
/** lvm2 lib/misc/crc.h INITIAL_CRC. */
const LVM_INITIAL_CRC = 0xf597a6cf;
/** Real metadata is kilobytes; a text this large is damage, not a VG. */
const MAX_METADATA_TEXT_BYTES = 64 * 1024 * 1024;

/** One metadata area as its header describes it. */
export interface MdaHeader {
  /** Offset of the area in the PV. */
  readonly areaOffsetBytes: number;
  /** Size of the circular buffer, header included. */
  readonly areaSizeBytes: number;
  /** Slot 0: the committed metadata; undefined when the area holds none (an orphan PV). */
  readonly text?: { readonly offsetBytes: number; readonly sizeBytes: number; readonly checksum: number };
  readonly ignored: boolean;
}

/** The metadata text of an area and where it starts in the PV. */
export interface MetadataText {
  readonly text: string;
  /** Where the text starts in the PV (error messages). */
  readonly pvOffsetBytes: number;
}

/** The one error of LVM decoding: `LVM metadata on /dev/sda2 at byte N: what`. */
export function lvmLayoutError(pvName: string, atByte: number, what: string, cause?: unknown): SparsifyError {
  return new SparsifyError('BAD_LAYOUT', `LVM metadata on ${pvName} at byte ${atByte}: ${what}`, {
    cause,
    hint: 'the volume is copied as is; run pvck on it in the guest to check its metadata',
  });
}

/** lvm2's checksum: the IEEE CRC register seeded with INITIAL_CRC, no final inversion. */
export function lvmCrc(...parts: Uint8Array[]): number {
  let state = LVM_INITIAL_CRC;
  for (const part of parts) state = crc32Update(state, part);
  return state;
}

/**
 * Decodes the mda_header sector of an area found at `area` by the PV label; throws BAD_LAYOUT
 * (with `pvName` and the byte) when the magic, version, checksum, start or size is wrong.
 */
export function parseMdaHeader(sector: Uint8Array, area: PvArea, pvName: string): MdaHeader {
  const fail = (what: string): never => {
    throw lvmLayoutError(pvName, area.offsetBytes, `metadata area header: ${what}`);
  };
  if (sector.length < MDA_HEADER_BYTES) fail('short sector');
  const view = viewOf(sector);
  if (!hasAscii(sector, MDA.magic, MDA_MAGIC)) fail('bad magic');
  if (view.getUint32(MDA.checksum, true) !== lvmCrc(sector.subarray(MDA.magic, MDA_HEADER_BYTES))) {
    fail('checksum mismatch');
  }
  const version = view.getUint32(MDA.version, true);
  if (version !== MDA_VERSION) fail(`version ${version}, expected ${MDA_VERSION}`);
  const start = u64le(view, MDA.start);
  if (start !== area.offsetBytes) fail(`records start ${start}, the PV label says ${area.offsetBytes}`);
  const size = u64le(view, MDA.size);
  if (size <= MDA_HEADER_BYTES || size > area.sizeBytes) {
    fail(`records size ${size}, the PV label says ${area.sizeBytes}`);
  }
  const slot = MDA.rawLocn;
  const offsetBytes = u64le(view, slot + RAW_LOCN.offset);
  const sizeBytes = u64le(view, slot + RAW_LOCN.size);
  const ignored = (view.getUint32(slot + RAW_LOCN.flags, true) & RAW_LOCN_IGNORED) !== 0;
  const checksum = view.getUint32(slot + RAW_LOCN.checksum, true);
  const text = offsetBytes === 0 || sizeBytes === 0 ? {} : { text: { offsetBytes, sizeBytes, checksum } };
  return { areaOffsetBytes: start, areaSizeBytes: size, ignored, ...text };
}

/** The two pieces of a text in the circular buffer, as offsets inside the area; throws on nonsense. */
function textPieces(header: MdaHeader, fail: (what: string) => never): Array<[number, number]> {
  const { offsetBytes, sizeBytes } = header.text!;
  const ring = header.areaSizeBytes;
  if (offsetBytes < MDA_HEADER_BYTES || offsetBytes >= ring) {
    fail(`metadata text offset ${offsetBytes} is outside the area`);
  }
  if (sizeBytes > ring - MDA_HEADER_BYTES || sizeBytes > MAX_METADATA_TEXT_BYTES) {
    fail(`metadata text of ${sizeBytes} bytes does not fit the area`);
  }
  // With size ≤ ring − header, the wrapped tail [header, header+wrap) ends before `offsetBytes`.
  const wrapBytes = Math.max(0, offsetBytes + sizeBytes - ring);
  const pieces: Array<[number, number]> = [[offsetBytes, sizeBytes - wrapBytes]];
  if (wrapBytes > 0) pieces.push([MDA_HEADER_BYTES, wrapBytes]);
  return pieces;
}

/** Reads the committed metadata text of an area (undefined when it has none), checksum checked. */
export async function readMetadataText(
  pvReader: BlockReader,
  header: MdaHeader,
  pvName: string,
): Promise<MetadataText | undefined> {
  if (!header.text || header.ignored) return undefined;
  const pvOffsetBytes = header.areaOffsetBytes + header.text.offsetBytes;
  const fail = (what: string): never => {
    throw lvmLayoutError(pvName, pvOffsetBytes, what);
  };
  if (header.areaOffsetBytes + header.areaSizeBytes > pvReader.sizeBytes) {
    fail('metadata area runs past the end of the PV');
  }
  const parts: Uint8Array[] = [];
  for (const [at, length] of textPieces(header, fail)) {
    parts.push(await pvReader.read(header.areaOffsetBytes + at, length));
  }
  if (lvmCrc(...parts) !== header.text.checksum) fail('metadata text checksum mismatch');
  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  // lvm2 2.03 counts the terminating NUL in the size; older versions did not.
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return { text: new TextDecoder('latin1').decode(bytes.subarray(0, end)), pvOffsetBytes };
}
