import type { Range } from '../disk/extent-set.js';
import { pushMerged } from './range-math.js';

/**
 * Zero detection on read buffers. `Buffer#compare` with ranges is a memcmp against a shared zero
 * buffer with no allocation per call; measured on this machine it scans ~23 GB/s granule by
 * granule, against 4–8 GB/s for Int32Array/BigUint64Array loops. Testing a whole block of
 * granules first and splitting it only when it holds data doubles that (~44 GB/s all-zero,
 * ~42 GB/s with half the granules holding data).
 */

/** Bytes compared at once before splitting into granules. */
const BLOCK_BYTES = 64 * 1024;

let zeroes = Buffer.alloc(BLOCK_BYTES);

function zeroBuffer(minBytes: number): Buffer {
  if (zeroes.length < minBytes) zeroes = Buffer.alloc(minBytes);
  return zeroes;
}

/** True when buf[startByte, endByte) holds only zero bytes. */
export function isAllZero(buf: Buffer, startByte: number, endByte: number): boolean {
  const len = endByte - startByte;
  if (len <= 0) return true;
  const zero = zeroBuffer(Math.min(len, BLOCK_BYTES));
  for (let at = startByte; at < endByte; at += zero.length) {
    const n = Math.min(zero.length, endByte - at);
    if (buf.compare(zero, 0, n, at, at + n) !== 0) return false;
  }
  return true;
}

/**
 * The data runs of a chunk: the granules of `ranges` (absolute, granule-aligned at their start)
 * that hold a non-zero byte, coalesced into maximal runs. `buf` holds the disk bytes from
 * `bufStartBytes`; every range must lie inside it.
 */
export function findDataRuns(buf: Buffer, bufStartBytes: number, ranges: readonly Range[], granuleBytes: number): Range[] {
  const runs: Range[] = [];
  const blockBytes = Math.max(granuleBytes, Math.floor(BLOCK_BYTES / granuleBytes) * granuleBytes);
  for (const r of ranges) {
    for (let block = r.start; block < r.end; block += blockBytes) {
      const blockEnd = Math.min(block + blockBytes, r.end);
      if (isAllZero(buf, block - bufStartBytes, blockEnd - bufStartBytes)) continue;
      if (blockEnd - block <= granuleBytes) {
        pushMerged(runs, block, blockEnd);
        continue;
      }
      for (let g = block; g < blockEnd; g += granuleBytes) {
        const gEnd = Math.min(g + granuleBytes, blockEnd);
        if (!isAllZero(buf, g - bufStartBytes, gEnd - bufStartBytes)) pushMerged(runs, g, gEnd);
      }
    }
  }
  return runs;
}
