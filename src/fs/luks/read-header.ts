/** Reads and decodes the header of a LUKS volume, whichever version it is. */
import { viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { badLuks, type LuksHeader } from './header.js';
import { LUKS1_HEADER_BYTES, parseLuks1Header } from './luks1.js';
import { readLuks2Header } from './luks2.js';

const VERSION_OFFSET = 6;

/** The decoded LUKS1 or LUKS2 header of the volume `reader` covers; BAD_IMAGE when damaged. */
export async function readLuksHeader(reader: BlockReader): Promise<LuksHeader> {
  if (reader.sizeBytes < LUKS1_HEADER_BYTES) throw badLuks('LUKS header at byte 0', `the volume holds only ${reader.sizeBytes} bytes`);
  const head = await reader.read(0, LUKS1_HEADER_BYTES);
  const version = viewOf(head).getUint16(VERSION_OFFSET, false);
  if (version === 1) return parseLuks1Header(head, reader.sizeBytes);
  if (version === 2) return readLuks2Header(reader);
  throw badLuks('LUKS header at byte 0', `version ${version}`);
}
