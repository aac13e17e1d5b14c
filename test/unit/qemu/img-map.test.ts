import { describe, expect, it } from 'vitest';
import { parseLayerMap } from '../../../src/qemu/img-map.js';

const MiB = 1024 * 1024;

describe('parseLayerMap', () => {
  it('top: what depth 0 holds (data or zero clusters); present: what any layer holds; the rest is no layer', () => {
    // As qemu-img map --output=json prints a qcow2 over a qcow2 base (qemu 7.2).
    const json = JSON.stringify([
      { start: 0, length: MiB, depth: 0, present: true, zero: false, data: true, offset: 327680 },
      { start: MiB, length: MiB, depth: 1, present: true, zero: false, data: true, offset: 1376256 },
      { start: 2 * MiB, length: MiB, depth: 0, present: true, zero: true, data: false },
      { start: 3 * MiB, length: 5 * MiB, depth: 2, present: false, zero: true, data: false },
    ]);
    const map = parseLayerMap(json);
    expect(map.top.ranges).toEqual([{ start: 0, end: MiB }, { start: 2 * MiB, end: 3 * MiB }]);
    expect(map.present.ranges).toEqual([{ start: 0, end: 3 * MiB }]);
  });

  it('untrusted output: not JSON, not a list, or an entry without a whole start, length or depth is TOOL_FAILED', () => {
    for (const bad of ['nope', '{}', '[{"start":0,"length":-1,"depth":0}]', '[{"start":0.5,"length":1,"depth":0}]', '[null]']) {
      expect(() => parseLayerMap(bad), bad).toThrow(expect.objectContaining({ code: 'TOOL_FAILED' }));
    }
  });
});
