import { describe, expect, it } from 'vitest';
import type { Range } from '../../../src/disk/extent-set.js';
import { ZeroRunMerger } from '../../../src/copy/zero-runs.js';

describe('ZeroRunMerger', () => {
  it('merges zero parts of chunks finished out of order into maximal runs, in disk order', () => {
    const runs: Range[] = [];
    const m = new ZeroRunMerger((r) => runs.push(r));
    m.complete(2, { start: 200, end: 300 }, []);
    m.complete(1, { start: 100, end: 200 }, [{ start: 100, end: 120 }]);
    expect(runs).toEqual([]);
    m.complete(0, { start: 0, end: 100 }, [{ start: 40, end: 60 }]);
    expect(runs).toEqual([{ start: 0, end: 40 }, { start: 60, end: 100 }]);
    m.complete(3, { start: 300, end: 400 }, [{ start: 350, end: 400 }]);
    expect(runs).toEqual([{ start: 0, end: 40 }, { start: 60, end: 100 }, { start: 120, end: 350 }]);
    m.complete(4, { start: 400, end: 500 }, []);
    m.finish();
    expect(runs[runs.length - 1]).toEqual({ start: 400, end: 500 });
  });
});
