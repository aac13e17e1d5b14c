import { describe, expect, it } from 'vitest';
import { copyBlocks } from '../../../src/copy/copier.js';
import { MemorySource, RecordingSink } from '../../helpers/memory-block.js';
import { ExtentSet, type Range } from '../../../src/disk/extent-set.js';
import {
  expectedImage,
  firstDifference,
  firstOverlap,
  prng,
  randInt,
  randomDisk,
  randomRanges,
  zeroRangesOf,
} from '../../helpers/copy-fakes.js';

const ALIGNMENTS = [1, 512, 4096, 65536];

/** One random layout and copy configuration, entirely decided by `seed`. */
function scenario(seed: number) {
  const rand = prng(seed);
  const sizeBytes = randInt(rand, 1, 600_000);
  const data = randomDisk(rand, sizeBytes);
  const skip = ExtentSet.from(randomRanges(rand, sizeBytes, randInt(rand, 0, 8), sizeBytes >> 2));
  const withExtents = rand() < 0.5;
  const zeroRanges = withExtents ? zeroRangesOf(data, randInt(rand, 1, 20_000)) : undefined;
  const alignment = ALIGNMENTS[randInt(rand, 0, ALIGNMENTS.length)]!;
  const sinkSize = alignment > 1 && rand() < 0.5 ? Math.ceil(sizeBytes / 512) * 512 : sizeBytes;
  return {
    data,
    skip,
    zeroRanges,
    alignment,
    sinkSize,
    zeroInitialized: rand() < 0.5,
    granuleBytes: 2 ** randInt(rand, 9, 14),
    chunkBytes: randInt(rand, 1, 200_000),
    maxInFlightBytes: randInt(rand, 1, 1_000_000),
    maxExtentsPerReply: rand() < 0.5 ? 1 + randInt(rand, 0, 4) : undefined,
  };
}

/** Every granule-sized piece of every write holds a non-zero byte of the source. */
function writesAllHoldData(writes: Range[], image: Uint8Array, granuleBytes: number, sizeBytes: number): boolean {
  return writes.every((w) => {
    for (let g = w.start; g < Math.min(w.end, sizeBytes); g += granuleBytes) {
      if (image.subarray(g, Math.min(g + granuleBytes, sizeBytes)).every((b) => b === 0)) return false;
    }
    return true;
  });
}

describe('copyBlocks over random layouts', () => {
  it.each(Array.from({ length: 300 }, (_, i) => i + 1))('seed %i', async (seed) => {
    const s = scenario(seed);
    const source = new MemorySource(s.data, {
      ...(s.zeroRanges ? { zeroRanges: s.zeroRanges } : {}),
      ...(s.maxExtentsPerReply ? { maxExtentsPerReply: s.maxExtentsPerReply } : {}),
    });
    const sink = new RecordingSink(s.sinkSize, { zeroInitialized: s.zeroInitialized, writeAlignmentBytes: s.alignment });
    const { skip, granuleBytes, chunkBytes, maxInFlightBytes } = s;
    const stats = await copyBlocks({ source, sink, skip, granuleBytes, chunkBytes, maxInFlightBytes });

    const expected = expectedImage(s.data, s.skip.ranges);
    expect(firstDifference(sink.image.subarray(0, s.data.length), expected)).toBe(-1);
    expect(sink.image.subarray(s.data.length).every((b) => b === 0 || b === 0xee)).toBe(true);
    expect(firstOverlap(source.reads, [...s.skip.ranges, ...(s.zeroRanges ?? [])])).toBeUndefined();
    expect(stats.skippedFreeBytes + stats.zeroExtentBytes + stats.readBytes).toBe(s.data.length);
    expect(stats.readBytes).toBe(source.reads.reduce((n, r) => n + r.end - r.start, 0));

    const zeros = sink.callsOf('zero').map((c) => ({ start: c.offsetBytes, end: c.offsetBytes + c.lengthBytes }));
    if (s.zeroInitialized) expect(zeros).toEqual([]);
    const sorted = [...zeros].sort((a, b) => a.start - b.start);
    expect(sorted.some((z, i) => i > 0 && sorted[i - 1]!.end === z.start)).toBe(false);

    const granule = Math.ceil(Math.max(s.granuleBytes, s.alignment) / s.alignment) * s.alignment;
    const writes = sink.callsOf('write').map((c) => ({ start: c.offsetBytes, end: c.offsetBytes + c.lengthBytes }));
    expect(writesAllHoldData(writes, expected, granule, s.data.length)).toBe(true);
    expect(source.inFlight + sink.inFlight).toBe(0);
  });
});
