/**
 * Progress people can plan by: bytes done of bytes to do, the rate over the last few seconds,
 * and the time left at that rate. Pure logic over a clock the caller may replace (tests).
 */

/** Where a copy or discard stands. */
export interface Progress {
  readonly doneBytes: number;
  /** What the phase will really process (a copy: the bytes it will read, not the virtual size). */
  readonly totalBytes: number;
  /** Bytes per second over the last few seconds; absent until RATE_MIN_SPAN_MS have passed. */
  readonly bytesPerSecond?: number;
  /** Seconds left at that rate; absent while the rate is unknown or zero. */
  readonly etaSeconds?: number;
  /** The meter's clock when this was measured, for throttling what is shown. */
  readonly atMs: number;
}

/** The rate is the slope over this much of the most recent history. */
export const RATE_WINDOW_MS = 5000;
/** No rate (and so no ETA) before the history spans this long: a first chunk's burst is not a rate. */
export const RATE_MIN_SPAN_MS = 1000;
/** History keeps at most one sample per this many ms, so it stays a few dozen entries long. */
const SAMPLE_EVERY_MS = 200;

interface Sample {
  readonly atMs: number;
  readonly doneBytes: number;
}

/** Turns a stream of (done, total) into {@link Progress}; one meter per phase. */
export class ProgressMeter {
  readonly #now: () => number;
  readonly #samples: Sample[] = [];

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** Records `doneBytes` now and says where the phase stands. */
  update(doneBytes: number, totalBytes: number): Progress {
    const atMs = this.#now();
    this.#record({ atMs, doneBytes });
    const oldest = this.#samples[0]!;
    const spanMs = atMs - oldest.atMs;
    if (spanMs < RATE_MIN_SPAN_MS) return { doneBytes, totalBytes, atMs };
    const bytesPerSecond = Math.max(0, ((doneBytes - oldest.doneBytes) * 1000) / spanMs);
    const leftBytes = Math.max(0, totalBytes - doneBytes);
    if (bytesPerSecond <= 0) return { doneBytes, totalBytes, bytesPerSecond, atMs };
    return { doneBytes, totalBytes, bytesPerSecond, etaSeconds: Math.ceil(leftBytes / bytesPerSecond), atMs };
  }

  #record(sample: Sample): void {
    const samples = this.#samples;
    // Samples closer than SAMPLE_EVERY_MS replace the newest; the first stays until the window
    // passes it, so it anchors the rate of the first seconds.
    const n = samples.length;
    if (n > 1 && sample.atMs - samples[n - 2]!.atMs < SAMPLE_EVERY_MS) samples[n - 1] = sample;
    else samples.push(sample);
    while (samples.length > 2 && sample.atMs - samples[1]!.atMs >= RATE_WINDOW_MS) samples.shift();
  }
}
