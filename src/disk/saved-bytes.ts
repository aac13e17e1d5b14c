/**
 * A belt under the volume pass: the bytes of some ranges are read before an engine runs and,
 * after it, written back where they changed. Exactly the saved bytes are compared and written,
 * never their neighbours, which the engine may have changed rightly.
 */
import { ExtentSet, type Range } from './extent-set.js';
import type { BlockDevice, BlockReader } from './types.js';

/** Pieces are read and compared this large at most. */
const PIECE_BYTES = 1024 * 1024;

/** The content of some ranges of a device at one moment. */
export interface SavedBytes {
  readonly pieces: readonly { readonly offsetBytes: number; readonly data: Uint8Array }[];
}

function* piecesOf(ranges: ExtentSet): Generator<Range> {
  for (const r of ranges.ranges) {
    for (let start = r.start; start < r.end; start += PIECE_BYTES) {
      yield { start, end: Math.min(r.end, start + PIECE_BYTES) };
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Reads the bytes of `ranges` (a copy: the device may reuse its buffers). */
export async function saveBytes(device: BlockReader, ranges: ExtentSet): Promise<SavedBytes> {
  const pieces = [];
  for (const p of piecesOf(ranges)) {
    pieces.push({ offsetBytes: p.start, data: new Uint8Array(await device.read(p.start, p.end - p.start)) });
  }
  return { pieces };
}

/** Writes back every saved piece whose bytes changed; returns the ranges written back. */
export async function restoreChangedBytes(device: BlockDevice, saved: SavedBytes): Promise<ExtentSet> {
  const restored: Range[] = [];
  for (const { offsetBytes, data } of saved.pieces) {
    if (sameBytes(await device.read(offsetBytes, data.length), data)) continue;
    await device.write(offsetBytes, data);
    restored.push({ start: offsetBytes, end: offsetBytes + data.length });
  }
  return ExtentSet.from(restored);
}
