import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';

const set = (...pairs: [number, number][]) => ExtentSet.from(pairs.map(([start, end]) => ({ start, end })));

describe('ExtentSet', () => {
  it('sorts, merges overlaps and neighbours, drops empty ranges', () => {
    expect(set([10, 20], [0, 5], [5, 8], [15, 30], [40, 40]).ranges).toEqual([
      { start: 0, end: 8 },
      { start: 10, end: 30 },
    ]);
  });

  it('subtract, intersect, union, clip, covers', () => {
    const a = set([0, 100], [200, 300]);
    const b = set([50, 60], [90, 210], [290, 400]);
    expect(a.subtract(b).ranges).toEqual([
      { start: 0, end: 50 },
      { start: 60, end: 90 },
      { start: 210, end: 290 },
    ]);
    expect(a.intersect(b).ranges).toEqual([
      { start: 50, end: 60 },
      { start: 90, end: 100 },
      { start: 200, end: 210 },
      { start: 290, end: 300 },
    ]);
    expect(a.union(b).totalBytes).toBe(400);
    expect(a.clip(250).totalBytes).toBe(150);
    expect(a.covers(10, 100)).toBe(true);
    expect(a.covers(90, 201)).toBe(false);
    expect(a.shift(1000).ranges[0]).toEqual({ start: 1000, end: 1100 });
  });

  it('agrees with a bitmap model on random sets', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    for (let round = 0; round < 200; round++) {
      const mk = () => set(...Array.from({ length: rnd(6) }, () => { const s = rnd(100); return [s, s + rnd(30)] as [number, number]; }));
      const a = mk();
      const b = mk();
      const bits = (s: ExtentSet) => Array.from({ length: 140 }, (_, i) => s.ranges.some((r) => i >= r.start && i < r.end));
      const [ba, bb] = [bits(a), bits(b)];
      expect(bits(a.subtract(b))).toEqual(ba.map((x, i) => x && !bb[i]));
      expect(bits(a.intersect(b))).toEqual(ba.map((x, i) => x && bb[i]));
      expect(bits(a.union(b))).toEqual(ba.map((x, i) => x || bb[i]));
    }
  });
});
