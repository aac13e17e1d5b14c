import { describe, expect, it } from 'vitest';
import { ProgressMeter, RATE_MIN_SPAN_MS, RATE_WINDOW_MS } from '../../../src/progress/meter.js';

const MiB = 1024 * 1024;

/** A meter on a clock the test moves. */
function fakeClock(): { meter: ProgressMeter; advance(ms: number): void } {
  let now = 0;
  return { meter: new ProgressMeter(() => now), advance: (ms) => void (now += ms) };
}

describe('ProgressMeter: the rate over the last seconds and the time left', () => {
  it('says nothing of rate or time left before a second has passed', () => {
    const { meter, advance } = fakeClock();
    expect(meter.update(0, 100 * MiB)).toEqual({ doneBytes: 0, totalBytes: 100 * MiB, atMs: 0 });
    advance(RATE_MIN_SPAN_MS - 1);
    const early = meter.update(50 * MiB, 100 * MiB);
    expect(early.bytesPerSecond).toBeUndefined();
    expect(early.etaSeconds).toBeUndefined();
  });

  it('gives the rate and the time left once a second has passed', () => {
    const { meter, advance } = fakeClock();
    meter.update(0, 100 * MiB);
    for (let i = 1; i <= 10; i++) {
      advance(100);
      meter.update(i * MiB, 100 * MiB);
    }
    // 10 MiB in 1 s: 10 MiB/s, 90 MiB left → 9 s.
    expect(meter.update(10 * MiB, 100 * MiB)).toMatchObject({ bytesPerSecond: 10 * MiB, etaSeconds: 9 });
  });

  it('smooths over the last few seconds: a change of pace shows within the window, not at once', () => {
    const { meter, advance } = fakeClock();
    let done = 0;
    const step = (bytesPerSecond: number, seconds: number) => {
      for (let t = 0; t < seconds * 10; t++) {
        advance(100);
        done += bytesPerSecond / 10;
        meter.update(done, 10_000 * MiB);
      }
    };
    meter.update(0, 10_000 * MiB);
    step(100 * MiB, 20);
    step(10 * MiB, 1);
    const justSlowed = meter.update(done, 10_000 * MiB).bytesPerSecond!;
    expect(justSlowed).toBeGreaterThan(60 * MiB); // one slow second among five
    expect(justSlowed).toBeLessThan(100 * MiB);
    step(10 * MiB, (RATE_WINDOW_MS / 1000) + 1);
    expect(meter.update(done, 10_000 * MiB).bytesPerSecond).toBeCloseTo(10 * MiB, -3);
  });

  it('hides the time left while nothing moves, and shows it again when it does', () => {
    const { meter, advance } = fakeClock();
    meter.update(5 * MiB, 100 * MiB);
    advance(RATE_WINDOW_MS + 1000);
    const stalled = meter.update(5 * MiB, 100 * MiB);
    expect(stalled.bytesPerSecond).toBe(0);
    expect(stalled.etaSeconds).toBeUndefined();
    advance(1000);
    expect(meter.update(6 * MiB, 100 * MiB).etaSeconds).toBeGreaterThan(0);
  });

  it('keeps a bounded history however many updates come', () => {
    const { meter, advance } = fakeClock();
    for (let i = 0; i < 100_000; i++) {
      advance(1);
      meter.update(i * 4096, 1e12);
    }
    // 4096 bytes per ms: the rate is exact whatever was dropped.
    expect(meter.update(99_999 * 4096, 1e12).bytesPerSecond).toBeCloseTo(4096 * 1000, 0);
  });

  it('ends at zero seconds left', () => {
    const { meter, advance } = fakeClock();
    meter.update(0, 10 * MiB);
    advance(2000);
    expect(meter.update(10 * MiB, 10 * MiB)).toMatchObject({ etaSeconds: 0, bytesPerSecond: 5 * MiB });
  });
});
