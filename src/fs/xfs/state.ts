/**
 * The state of an XFS volume the probe reports: `dirty` when its internal log was not cleanly
 * unmounted. XFS keeps no clean flag in its superblock; the kernel decides at mount by finding
 * the log's head, and so does log.ts: a binary search over the log's cycle numbers and at most
 * the last few records' blocks before the head (a few MiB at the most), never the whole log.
 */
import type { BlockReader } from '../../disk/types.js';
import type { FsState } from '../types.js';
import { readXfsLogRefusal } from './log.js';
import { parseXfsGeometry, readXfsSuperblockSector, superblockRefusal } from './superblock.js';

/** `{dirty: true}` when the log needs recovery; nothing when it is clean or its state is unknown. */
export async function readXfsState(reader: BlockReader): Promise<FsState> {
  const g = parseXfsGeometry(await readXfsSuperblockSector(reader));
  // A filesystem larger than its volume, or of features we do not know, has a log we do not read.
  if (superblockRefusal(g, reader.sizeBytes)) return {};
  const refusal = await readXfsLogRefusal(reader, g);
  return refusal?.needsRecovery ? { dirty: true } : {};
}
