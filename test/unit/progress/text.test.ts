import { describe, expect, it } from 'vitest';
import type { Progress } from '../../../src/progress/meter.js';
import { ProgressThrottle, clockTime, percentOf, progressText } from '../../../src/progress/text.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe('progress in words', () => {
  it('bytes of bytes and the percentage, then the rate and the time left once known', () => {
    expect(progressText({ doneBytes: 1.2 * GiB, totalBytes: 3.5 * GiB, atMs: 0 })).toBe('1.2 GiB of 3.5 GiB (34%)');
    expect(progressText({ doneBytes: 1.2 * GiB, totalBytes: 3.5 * GiB, bytesPerSecond: 250 * MiB, etaSeconds: 75, atMs: 0 })).toBe(
      '1.2 GiB of 3.5 GiB (34%), 250 MiB/s, 1:15 left',
    );
    expect(progressText({ doneBytes: 1 * GiB, totalBytes: 3 * GiB, bytesPerSecond: 0, atMs: 0 })).toBe('1.0 GiB of 3.0 GiB (33%), 0 B/s');
    expect(progressText({ doneBytes: 3 * GiB, totalBytes: 3 * GiB, bytesPerSecond: 300 * MiB, etaSeconds: 0, atMs: 0 })).toBe(
      '3.0 GiB of 3.0 GiB (100%), 300 MiB/s',
    );
  });

  it('percent is rounded down, so 100% means done; an empty phase is done', () => {
    expect(percentOf({ doneBytes: 999, totalBytes: 1000 })).toBe(99);
    expect(percentOf({ doneBytes: 1000, totalBytes: 1000 })).toBe(100);
    expect(percentOf({ doneBytes: 0, totalBytes: 0 })).toBe(100);
  });

  it('time left as m:ss, h:mm:ss from an hour', () => {
    expect(clockTime(0)).toBe('0:00');
    expect(clockTime(9)).toBe('0:09');
    expect(clockTime(599)).toBe('9:59');
    expect(clockTime(3600)).toBe('1:00:00');
    expect(clockTime(3 * 3600 + 62)).toBe('3:01:02');
  });
});

describe('ProgressThrottle', () => {
  const at = (atMs: number, doneBytes = 1, totalBytes = 100): Progress => ({ doneBytes, totalBytes, atMs });

  it('lets the first through, then one per interval, and the finished one once', () => {
    const throttle = new ProgressThrottle(1000);
    const shown = [at(0), at(10), at(999), at(1000), at(1500), at(2100), at(2200, 100), at(2300, 100)].filter((p) => throttle.due(p));
    expect(shown.map((p) => p.atMs)).toEqual([0, 1000, 2100, 2200]);
  });

  it('a plain log of a long copy gets one line a second at most', () => {
    const throttle = new ProgressThrottle(1000);
    let lines = 0;
    for (let ms = 0; ms < 60_000; ms += 7) if (throttle.due(at(ms, ms, 60_000))) lines++;
    expect(lines).toBeLessThanOrEqual(61);
    expect(lines).toBeGreaterThanOrEqual(59);
  });
});
