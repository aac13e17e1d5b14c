import { describe, expect, it } from 'vitest';
import { findDataRuns, isAllZero } from '../../../src/copy/zero-scan.js';

describe('isAllZero', () => {
  it('finds a single non-zero byte anywhere, including past the 64 KiB compare block', () => {
    const buf = Buffer.alloc(300_000);
    expect(isAllZero(buf, 0, buf.length)).toBe(true);
    for (const at of [0, 1, 65_535, 65_536, 131_073, 299_999]) {
      buf[at] = 1;
      expect(isAllZero(buf, 0, buf.length)).toBe(false);
      expect(isAllZero(buf, at, at + 1)).toBe(false);
      expect(isAllZero(buf, 0, at)).toBe(true);
      expect(isAllZero(buf, at + 1, buf.length)).toBe(true);
      buf[at] = 0;
    }
    expect(isAllZero(buf, 5, 5)).toBe(true);
  });
});

describe('findDataRuns', () => {
  it('coalesces data granules, honours the buffer origin, and handles a short last granule', () => {
    const base = 1_000_000 - (1_000_000 % 4096);
    const buf = Buffer.alloc(10 * 4096 + 100);
    for (const g of [1, 2, 3, 7]) buf[g * 4096 + 4095] = 1;
    buf[10 * 4096 + 99] = 1;
    const runs = findDataRuns(buf, base, [{ start: base, end: base + buf.length }], 4096);
    expect(runs).toEqual([
      { start: base + 4096, end: base + 4 * 4096 },
      { start: base + 7 * 4096, end: base + 8 * 4096 },
      { start: base + 10 * 4096, end: base + 10 * 4096 + 100 },
    ]);
  });

  it('scans only the given ranges', () => {
    const buf = Buffer.alloc(8 * 4096).fill(1);
    const runs = findDataRuns(buf, 0, [{ start: 4096, end: 8192 }, { start: 5 * 4096, end: 6 * 4096 }], 4096);
    expect(runs).toEqual([{ start: 4096, end: 8192 }, { start: 5 * 4096, end: 6 * 4096 }]);
  });

  it('works with granules larger than the compare block', () => {
    const buf = Buffer.alloc(4 * 131_072);
    buf[2 * 131_072 + 70_000] = 3;
    expect(findDataRuns(buf, 0, [{ start: 0, end: buf.length }], 131_072)).toEqual([
      { start: 2 * 131_072, end: 3 * 131_072 },
    ]);
  });
});
