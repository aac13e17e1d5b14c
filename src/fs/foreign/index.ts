import type { BlockReader } from '../../disk/types.js';
import type { FsDriver } from '../driver.js';
import { alwaysLive, fits, readAt, type Detected } from '../probe-common.js';
import { FOREIGN_SIGNATURES, FOREIGN_TYPES } from './signatures.js';

/** The first foreign signature found in the volume. */
async function detectForeign(reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  for (const s of FOREIGN_SIGNATURES) {
    if (!fits(reader, s.offsetBytes, s.lengthBytes)) continue;
    const result = s.parse(await readAt(reader, head, s.offsetBytes, s.lengthBytes));
    if (result) return { result, magicOffsetBytes: s.offsetBytes + s.magicOffsetBytes, confirm: alwaysLive };
  }
  return undefined;
}

/**
 * Filesystems known by signature only (f2fs, exFAT, JFS, HFS+, ReiserFS, NILFS2): no state, no
 * free-map reader; the appliance mounts them.
 */
export const foreignDriver: FsDriver = { types: FOREIGN_TYPES, detect: detectForeign };
