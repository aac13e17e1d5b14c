/**
 * Block bitmaps as runs of free clusters (kernel Documentation/filesystems/ext4/bitmaps.rst):
 * bit i of the group is bit (i mod 8) of byte i/8, set when the cluster is in use.
 */

/** Free runs of one group in bitmap bits, as flat [start, end) pairs, and how many bits are free. */
export interface FreeRuns {
  readonly runs: number[];
  readonly freeBits: number;
}

const ALL_USED = 0xff;
const ALL_FREE = 0x00;

/** The runs of clear bits among the first `bitCount` bits of `bitmap` (the caller checked its length). */
export function parseBitmapFreeRuns(bitmap: Uint8Array, bitCount: number): FreeRuns {
  const runs: number[] = [];
  let freeBits = 0;
  let runStart = -1;
  let bit = 0;
  const close = (at: number): void => {
    if (runStart < 0) return;
    runs.push(runStart, at);
    freeBits += at - runStart;
    runStart = -1;
  };
  while (bit < bitCount) {
    const byte = bitmap[bit >>> 3]!;
    if ((bit & 7) === 0 && bit + 8 <= bitCount && (byte === ALL_USED || byte === ALL_FREE)) {
      if (byte === ALL_USED) close(bit);
      else if (runStart < 0) runStart = bit;
      bit += 8;
      continue;
    }
    if (byte & (1 << (bit & 7))) close(bit);
    else if (runStart < 0) runStart = bit;
    bit++;
  }
  close(bitCount);
  return { runs, freeBits };
}

/** The first clear bit in [startBit, endBit), or -1 when all are set. */
export function firstClearBit(bitmap: Uint8Array, startBit: number, endBit: number): number {
  for (let bit = startBit; bit < endBit; bit++) {
    if ((bit & 7) === 0 && bit + 8 <= endBit && bitmap[bit >>> 3] === ALL_USED) {
      bit += 7;
      continue;
    }
    if (!(bitmap[bit >>> 3]! & (1 << (bit & 7)))) return bit;
  }
  return -1;
}

/** The free runs of a computed bitmap: `bitCount` bits of which the sorted, disjoint `usedRuns` pairs are set. */
export function complementRuns(bitCount: number, usedRuns: readonly number[]): FreeRuns {
  const runs: number[] = [];
  let freeBits = 0;
  let cursor = 0;
  for (let i = 0; i + 1 < usedRuns.length; i += 2) {
    const start = Math.min(usedRuns[i]!, bitCount);
    if (start > cursor) {
      runs.push(cursor, start);
      freeBits += start - cursor;
    }
    cursor = Math.max(cursor, Math.min(usedRuns[i + 1]!, bitCount));
  }
  if (cursor < bitCount) {
    runs.push(cursor, bitCount);
    freeBits += bitCount - cursor;
  }
  return { runs, freeBits };
}
