import { describe, expect, it } from 'vitest';
import { describeTimeRatio, median, ratio, rotated } from '../../../scripts/benchmark/stats.js';

describe('bench arithmetic', () => {
  it('rotates the order so that every peer runs once in every position', () => {
    const peers = ['A', 'B', 'C'];
    expect([0, 1, 2, 3].map((r) => rotated(peers, r).join(''))).toEqual(['ABC', 'BCA', 'CAB', 'ABC']);
    for (let position = 0; position < peers.length; position++) {
      expect(new Set([0, 1, 2].map((r) => rotated(peers, r)[position]))).toEqual(new Set(peers));
    }
    expect(rotated([], 5)).toEqual([]);
  });

  it('takes the middle value, or the mean of the middle two, whatever the order', () => {
    expect(median([9, 1, 5])).toBe(5);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([])).toBeNaN();
  });

  it('gives no ratio against a missing or failed baseline', () => {
    expect(ratio(12, 3)).toBe(4);
    expect(ratio(12, undefined)).toBeUndefined();
    expect(ratio(12, 0)).toBeUndefined();
    expect(ratio(undefined, 3)).toBeUndefined();
    expect(describeTimeRatio(36.26)).toBe('36.3x slower');
    expect(describeTimeRatio(0.5)).toBe('2.0x faster');
    expect(describeTimeRatio(undefined)).toBe('-');
  });
});
