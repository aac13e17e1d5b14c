import type { Range } from '../../src/disk/extent-set.js';
import { ExtentSet } from '../../src/disk/extent-set.js';

/** A seeded PRNG (mulberry32): the same seed gives the same layouts on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [lo, hi). */
export function randInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo));
}

/** Fills [start, end) of `buf` with non-zero pseudo-random bytes. */
export function fillData(buf: Uint8Array, start: number, end: number, rand: () => number): void {
  for (let i = start; i < end; i++) buf[i] = 1 + Math.floor(rand() * 255);
}

/** Random ranges inside [0, sizeBytes): `count` runs of up to `maxLen` bytes each. */
export function randomRanges(rand: () => number, sizeBytes: number, count: number, maxLen: number): Range[] {
  const out: Range[] = [];
  for (let i = 0; i < count; i++) {
    const start = randInt(rand, 0, sizeBytes);
    out.push({ start, end: Math.min(sizeBytes, start + randInt(rand, 1, maxLen + 1)) });
  }
  return [...ExtentSet.from(out).ranges];
}

/** A random disk: runs of data, runs of zeros, and single data bytes at random places. */
export function randomDisk(rand: () => number, sizeBytes: number): Uint8Array {
  const data = new Uint8Array(sizeBytes);
  for (const r of randomRanges(rand, sizeBytes, randInt(rand, 0, 12), Math.max(1, sizeBytes >> 3))) {
    fillData(data, r.start, r.end, rand);
  }
  for (let i = randInt(rand, 0, 20); i > 0; i--) data[randInt(rand, 0, sizeBytes)] = 0x5a;
  return data;
}

/** Ranges of `data` that read as zero, at least `minLen` long: what a truthful server may report. */
export function zeroRangesOf(data: Uint8Array, minLen: number): Range[] {
  const out: Range[] = [];
  let start = -1;
  for (let i = 0; i <= data.length; i++) {
    const zero = i < data.length && data[i] === 0;
    if (zero && start < 0) start = i;
    if (!zero && start >= 0) {
      if (i - start >= minLen) out.push({ start, end: i });
      start = -1;
    }
  }
  return out;
}

/** What the copy must produce: the source with `skip` (and any range the source calls zero) zeroed. */
export function expectedImage(data: Uint8Array, ...zeroed: readonly (readonly Range[])[]): Uint8Array {
  const out = data.slice();
  for (const ranges of zeroed) for (const r of ranges) out.fill(0, r.start, Math.min(r.end, out.length));
  return out;
}

/** The first range of `a` that overlaps a range of `b`, if any. */
export function firstOverlap(a: readonly Range[], b: readonly Range[]): Range | undefined {
  return a.find((x) => b.some((y) => x.start < y.end && y.start < x.end));
}

/** A promise that resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The first offset where `a` and `b` differ (-1 when equal); fast, unlike toEqual on big arrays. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}
