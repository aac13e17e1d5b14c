import type { BlockSource } from './types.js';
import { ExtentSet, type Range } from './extent-set.js';

/** Largest range asked of block status at once (servers may answer less). */
const STATUS_STEP_BYTES = 1 << 30;

/**
 * The ranges of [offsetBytes, offsetBytes+lengthBytes) that the source says read as zero,
 * from its extents alone (no data is read). Empty when the source cannot say.
 */
export async function readZeroExtents(source: BlockSource, offsetBytes: number, lengthBytes: number): Promise<ExtentSet> {
  if (!source.canExtents) return ExtentSet.empty;
  const zeros: Range[] = [];
  const end = offsetBytes + lengthBytes;
  let pos = offsetBytes;
  while (pos < end) {
    const extents = await source.extents(pos, Math.min(STATUS_STEP_BYTES, end - pos));
    if (extents.length === 0) break;
    for (const e of extents) {
      const start = Math.max(e.offsetBytes, pos);
      const stop = Math.min(e.offsetBytes + e.lengthBytes, end);
      if (stop <= start) continue;
      if (e.zero) zeros.push({ start, end: stop });
      pos = Math.max(pos, stop);
    }
  }
  return ExtentSet.from(zeros);
}
