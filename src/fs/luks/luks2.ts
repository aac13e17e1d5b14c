/**
 * The LUKS2 header: "LUKS2 On-Disk Format Specification" version 1.1.x, §2 (two binary headers,
 * each followed by its JSON area and guarded by a checksum over both) and §3 (the JSON metadata).
 */
import { createHash } from 'node:crypto';
import { cString, u64be, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { badLuks, hashName, type LuksHeader } from './header.js';
import { parseLuks2Json } from './luks2-json.js';

const BINARY_HEADER_BYTES = 4096;
const F = { version: 6, hdrSize: 8, seqid: 16, label: 24, csumAlg: 72, uuid: 168, hdrOffset: 256, csum: 448 } as const;
const CSUM_FIELD_BYTES = 64;
const PRIMARY_MAGIC = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]; // "LUKS\xba\xbe"
const SECONDARY_MAGIC = [0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe]; // "SKUL\xba\xbe"
/** §2.1: hdr_size (binary header + JSON area) is one of 16 KiB … 4 MiB, a power of two. */
const HDR_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096].map((k) => k * 1024);

/** One checked copy of the header: where it was, its sequence id, its JSON text. */
interface Copy {
  readonly offsetBytes: number;
  readonly seqid: number;
  readonly hdrSize: number;
  readonly uuid: string;
  readonly label: string;
  readonly json: string;
}

/** Checks one binary header + JSON area against its checksum; a reason string when it is not valid. */
export function parseLuks2Copy(area: Uint8Array, offsetBytes: number): Copy | string {
  const magic = offsetBytes === 0 ? PRIMARY_MAGIC : SECONDARY_MAGIC;
  if (area.length < BINARY_HEADER_BYTES || !magic.every((b, i) => area[i] === b)) return 'no LUKS2 magic';
  const view = viewOf(area);
  if (view.getUint16(F.version, false) !== 2) return `version ${view.getUint16(F.version, false)}`;
  const hdrSize = u64be(view, F.hdrSize);
  if (!HDR_SIZES.includes(hdrSize)) return `header size ${hdrSize} is not one LUKS2 allows`;
  if (u64be(view, F.hdrOffset) !== offsetBytes) return `says it lies at byte ${u64be(view, F.hdrOffset)}`;
  if (area.length < hdrSize) return `truncated (${area.length} of ${hdrSize} bytes)`;
  const alg = cString(area, F.csumAlg, 32);
  let algorithm: string;
  try {
    algorithm = hashName('', alg);
  } catch {
    return `checksum algorithm "${alg}" is not supported`;
  }
  // §2.2: the checksum covers the binary header with its csum field zeroed, then the JSON area.
  // A copy, not a view: the reader may hand out a Buffer, whose slice() shares memory.
  const copy = Uint8Array.from(area.subarray(0, hdrSize));
  copy.fill(0, F.csum, F.csum + CSUM_FIELD_BYTES);
  const digest = createHash(algorithm).update(copy).digest();
  const stored = area.subarray(F.csum, F.csum + digest.length);
  if (!digest.equals(stored)) return 'checksum mismatch';
  return {
    offsetBytes,
    seqid: u64be(view, F.seqid),
    hdrSize,
    uuid: cString(area, F.uuid, 40),
    label: cString(area, F.label, 48),
    json: cString(area, BINARY_HEADER_BYTES, hdrSize - BINARY_HEADER_BYTES),
  };
}

/**
 * Reads both header copies (the secondary lies at the primary's hdr_size, or, when the primary
 * is damaged, at one of the sizes LUKS2 allows) and decodes the JSON of the valid one with the
 * higher sequence id, as cryptsetup does. Throws BAD_IMAGE when neither is valid.
 */
export async function readLuks2Header(reader: BlockReader): Promise<LuksHeader> {
  const where = 'LUKS2 header at byte 0';
  const readCopy = async (offsetBytes: number): Promise<Copy | string> => {
    if (offsetBytes + BINARY_HEADER_BYTES > reader.sizeBytes) return 'beyond the end of the volume';
    const binary = await reader.read(offsetBytes, BINARY_HEADER_BYTES);
    const hdrSize = u64be(viewOf(binary), F.hdrSize);
    if (!HDR_SIZES.includes(hdrSize)) return parseLuks2Copy(binary, offsetBytes);
    if (offsetBytes + hdrSize > reader.sizeBytes) return `truncated: ${hdrSize} bytes do not fit the volume`;
    return parseLuks2Copy(await reader.read(offsetBytes, hdrSize), offsetBytes);
  };
  const primary = await readCopy(0);
  const secondaryAt = typeof primary === 'string' ? HDR_SIZES : [primary.hdrSize];
  let secondary: Copy | string = 'not found';
  for (const offset of secondaryAt) {
    const found = await readCopy(offset);
    // Keep the reason of the first place with a secondary magic, not of the last place tried.
    if (found !== 'no LUKS2 magic' && typeof secondary === 'string' && secondary === 'not found') secondary = found;
    if (typeof found !== 'string') {
      secondary = found;
      break;
    }
  }
  const valid = [primary, secondary].filter((c): c is Copy => typeof c !== 'string');
  const best = valid.sort((a, b) => b.seqid - a.seqid)[0];
  if (!best) throw badLuks(where, `neither header copy is valid (primary: ${String(primary)}; secondary: ${String(secondary)})`);
  return parseLuks2Json(best.json, {
    where: `LUKS2 JSON area at byte ${best.offsetBytes + BINARY_HEADER_BYTES}`,
    uuid: best.uuid,
    label: best.label,
    hdrSize: best.hdrSize,
    volumeBytes: reader.sizeBytes,
  });
}
