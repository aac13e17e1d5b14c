import { describe, expect, it } from 'vitest';
import { ZeroExtentCursor } from '../../../src/copy/zero-extents.js';
import type { BlockSource, Extent } from '../../../src/disk/types.js';

function sourceAnswering(sizeBytes: number, reply: (offset: number, length: number) => Extent[]) {
  const queries: Array<[number, number]> = [];
  const source: BlockSource = {
    sizeBytes,
    canExtents: true,
    read: () => Promise.reject(new Error('no reads here')),
    extents: (offset, length) => {
      queries.push([offset, length]);
      return Promise.resolve(reply(offset, length));
    },
  };
  return { source, queries };
}

const ext = (offsetBytes: number, lengthBytes: number, zero: boolean): Extent => ({
  offsetBytes,
  lengthBytes,
  zero,
  hole: zero,
});

describe('ZeroExtentCursor', () => {
  it('answers from one query ahead, keeping zeros that span query boundaries', async () => {
    const { source, queries } = sourceAnswering(1000, (o, l) =>
      o === 0 ? [ext(0, 100, false), ext(100, 200, true)] : [ext(o, l, true)],
    );
    const cursor = new ZeroExtentCursor(source, 400);
    expect(await cursor.zerosIn(0, 150)).toEqual([{ start: 100, end: 150 }]);
    expect(await cursor.zerosIn(150, 500)).toEqual([{ start: 150, end: 500 }]);
    expect(queries).toEqual([[0, 400], [300, 400]]);
  });

  it('clips extents to the query and stops at a gap; a useless reply counts as data', async () => {
    const { source } = sourceAnswering(1000, (o) =>
      o === 0 ? [ext(0, 50, true), ext(80, 900, true)] : o === 50 ? [ext(10, 5, true)] : [ext(o, 5000, true)],
    );
    const cursor = new ZeroExtentCursor(source, 1000);
    expect(await cursor.zerosIn(0, 60)).toEqual([{ start: 0, end: 50 }]); // 50..: asked again, got nothing useful
    expect(await cursor.zerosIn(60, 2000)).toEqual([]);
  });

  it('treats holes without the zero flag as data', async () => {
    const { source } = sourceAnswering(100, () => [{ offsetBytes: 0, lengthBytes: 100, zero: false, hole: true }]);
    expect(await new ZeroExtentCursor(source).zerosIn(0, 100)).toEqual([]);
  });
});
