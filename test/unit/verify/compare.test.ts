import { describe, expect, it } from 'vitest';
import { ExtentSet, type Range } from '../../../src/disk/extent-set.js';
import type { BlockSource, Extent } from '../../../src/disk/types.js';
import { isSparsifyError } from '../../../src/errors.js';
import { findCopyMismatch } from '../../../src/verify/compare.js';
import { fillData, prng, randInt, randomDisk, randomRanges, zeroRangesOf } from '../../helpers/copy-fakes.js';

/** A disk in memory that answers block status truthfully (zero runs of 512+ bytes) and logs its reads. */
function memorySource(bytes: Uint8Array, opts: { delayMs?: (offset: number) => number } = {}) {
  const reads: Range[] = [];
  const zeros = ExtentSet.from(zeroRangesOf(bytes, 512));
  const source: BlockSource = {
    sizeBytes: bytes.length,
    canExtents: true,
    async read(offsetBytes, lengthBytes) {
      reads.push({ start: offsetBytes, end: offsetBytes + lengthBytes });
      const delay = opts.delayMs?.(offsetBytes) ?? 0;
      if (delay) await new Promise((r) => setTimeout(r, delay));
      return bytes.slice(offsetBytes, offsetBytes + lengthBytes);
    },
    async extents(offsetBytes, lengthBytes) {
      const asked = ExtentSet.of(offsetBytes, lengthBytes);
      const zero = asked.intersect(zeros);
      const all: Extent[] = [
        ...zero.ranges.map((r) => ({ offsetBytes: r.start, lengthBytes: r.end - r.start, zero: true, hole: true })),
        ...asked.subtract(zeros).ranges.map((r) => ({ offsetBytes: r.start, lengthBytes: r.end - r.start, zero: false, hole: false })),
      ];
      return all.sort((a, b) => a.offsetBytes - b.offsetBytes);
    },
  };
  return { source, reads };
}

/** What a correct copy of `source` looks like: the zeroed ranges cleared. */
function copyOf(source: Uint8Array, zeroed: ExtentSet): Uint8Array {
  const out = source.slice();
  for (const r of zeroed.ranges) out.fill(0, r.start, r.end);
  return out;
}

const signal = new AbortController().signal;
const SMALL = { chunkBytes: 4096, windowBytes: 65536 };

describe('findCopyMismatch', () => {
  const rand = prng(7);
  const size = 256 * 1024;
  const input = new Uint8Array(size);
  fillData(input, 0, size, rand);
  input.fill(0, 100_000, 150_000);
  const zeroed = ExtentSet.from([{ start: 10_000, end: 30_000 }, { start: 200_000, end: 210_001 }]);

  it('passes a correct copy, reading neither what both sides report as zero nor the source in zeroed ranges', async () => {
    const src = memorySource(input);
    const out = memorySource(copyOf(input, zeroed));
    expect(await findCopyMismatch({ source: src.source, output: out.source, zeroed, signal, ...SMALL })).toBeUndefined();
    const readAny = (reads: Range[], r: Range) => !ExtentSet.from(reads).intersect(ExtentSet.of(r.start, r.end - r.start)).isEmpty;
    expect(readAny(src.reads, { start: 100_512, end: 149_000 })).toBe(false);
    expect(readAny(out.reads, { start: 100_512, end: 149_000 })).toBe(false);
    expect(readAny(src.reads, { start: 10_000, end: 30_000 })).toBe(false);
  });

  it('names the first byte that differs from the source', async () => {
    const output = copyOf(input, zeroed);
    output[77_777]! ^= 1;
    output[240_000]! ^= 1;
    const m = await findCopyMismatch({ source: memorySource(input).source, output: memorySource(output).source, zeroed, signal, ...SMALL });
    expect(m).toEqual({ offsetBytes: 77_777, kind: 'differs' });
  });

  it('names a byte that is not zero inside a zeroed range, even where the output reports data', async () => {
    const output = copyOf(input, zeroed);
    output[210_000] = 9;
    const m = await findCopyMismatch({ source: memorySource(input).source, output: memorySource(output).source, zeroed, signal, ...SMALL });
    expect(m).toEqual({ offsetBytes: 210_000, kind: 'not-zero' });
  });

  it('finds data where the source reads zero and the output does not', async () => {
    const output = copyOf(input, zeroed);
    output[120_000] = 1;
    const m = await findCopyMismatch({ source: memorySource(input).source, output: memorySource(output).source, zeroed, signal, ...SMALL });
    expect(m).toEqual({ offsetBytes: 120_000, kind: 'differs' });
  });

  it('reports the first mismatch on the disk when a later chunk answers first', async () => {
    const output = copyOf(input, zeroed);
    output[5000]! ^= 1;
    output[9000]! ^= 1;
    // The chunk holding 5000 answers last of those in flight.
    const slowFirst = (o: number) => (o < 8192 ? 30 : 0);
    const m = await findCopyMismatch({
      source: memorySource(input, { delayMs: slowFirst }).source,
      output: memorySource(output, { delayMs: slowFirst }).source,
      zeroed,
      signal,
      ...SMALL,
    });
    expect(m).toEqual({ offsetBytes: 5000, kind: 'differs' });
  });

  it('stops with CANCELLED when the signal aborts', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await findCopyMismatch({ source: memorySource(input).source, output: memorySource(input).source, zeroed, signal: controller.signal }).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'CANCELLED')).toBe(true);
  });

  it('finds exactly the flipped byte on random disks (seeded)', async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = prng(seed);
      const n = randInt(r, 1, 40_000);
      const disk = randomDisk(r, n);
      const z = ExtentSet.from(randomRanges(r, n, randInt(r, 0, 6), 5000));
      const good = copyOf(disk, z);
      const opts = { zeroed: z, signal, chunkBytes: randInt(r, 1, 5000), windowBytes: randInt(r, 1, 20_000) };
      expect(await findCopyMismatch({ source: memorySource(disk).source, output: memorySource(good).source, ...opts }), `seed ${seed}`).toBeUndefined();
      const at = randInt(r, 0, n);
      const bad = good.slice();
      bad[at]! ^= 0x10;
      const kind = z.covers(at, at + 1) ? 'not-zero' : 'differs';
      expect(await findCopyMismatch({ source: memorySource(disk).source, output: memorySource(bad).source, ...opts }), `seed ${seed}`).toEqual({ offsetBytes: at, kind });
    }
  });
});
