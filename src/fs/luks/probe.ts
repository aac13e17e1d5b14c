/**
 * The LUKS detector: "LUKS On-Disk Format Specification" 1.2.3 and "LUKS2 On-Disk Format"
 * (binary header, big-endian).
 */
import { cString, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { alwaysLive, fits, labelField, type Detected } from '../probe-common.js';
import type { ProbeResult } from '../types.js';

const LUKS_MAGIC = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]; // "LUKS\xba\xbe"
const LUKS = { version: 6, label2: 24, uuid: 168 } as const;
const LUKS_UUID_BYTES = 40;
const LUKS2_LABEL_BYTES = 48;
const LUKS_HDR_BYTES = 512;

/** Decodes a LUKS1 or LUKS2 binary header; undefined without the magic or with another version. */
export function parseLuksHeader(hdr: Uint8Array): ProbeResult | undefined {
  if (hdr.length < LUKS_HDR_BYTES || !LUKS_MAGIC.every((b, i) => hdr[i] === b)) return undefined;
  const version = viewOf(hdr).getUint16(LUKS.version, false);
  if (version !== 1 && version !== 2) return undefined;
  const uuid = cString(hdr, LUKS.uuid, LUKS_UUID_BYTES);
  const label = version === 2 ? cString(hdr, LUKS.label2, LUKS2_LABEL_BYTES) : '';
  return { type: 'luks', ...(uuid ? { uuid } : {}), ...labelField(label), detail: `LUKS${version}` };
}

/** LUKS1 or LUKS2 by its header at byte 0. */
export function detectLuks(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  const result = fits(reader, 0, LUKS_HDR_BYTES) ? parseLuksHeader(head) : undefined;
  return Promise.resolve(result && { result, magicOffsetBytes: 0, confirm: alwaysLive });
}
