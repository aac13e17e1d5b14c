/** The arithmetic of the bench: run order, medians and ratios. Pure, so it is unit-tested. */

/**
 * The order of round `round` (0-based): the peers rotated left by `round`, so that over n rounds
 * every peer runs once in every position (A B C, B C A, C A B, …) and none always runs first, on
 * a cold cache, or last, after the others' writeback.
 */
export function rotated<T>(items: readonly T[], round: number): T[] {
  if (items.length === 0) return [];
  const shift = ((round % items.length) + items.length) % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** The median; of an even count, the mean of the middle two. NaN for no values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** value / base; undefined when either is missing or not positive (a failed or absent row). */
export function ratio(value: number | undefined, base: number | undefined): number | undefined {
  if (value === undefined || base === undefined) return undefined;
  if (!(value > 0) || !(base > 0)) return undefined;
  return value / base;
}

/** A time ratio for people: "36.3x slower" when above 1, "2.0x faster" when below. */
export function describeTimeRatio(r: number | undefined): string {
  if (r === undefined) return '-';
  return r >= 1 ? `${r.toFixed(1)}x slower` : `${(1 / r).toFixed(1)}x faster`;
}

/**
 * Seconds until a run's output is on disk: its wall time plus the `sync` timed right after it.
 * Undefined for a run recorded without that sync (an older JSON).
 */
export function durableSeconds(run: { readonly wallSeconds: number; readonly syncSeconds?: number }): number | undefined {
  return run.syncSeconds === undefined ? undefined : run.wallSeconds + run.syncSeconds;
}
