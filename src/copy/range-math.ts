import type { Range } from '../disk/extent-set.js';

/** The bytes covered by `ranges`. */
export function totalBytes(ranges: readonly Range[]): number {
  let sum = 0;
  for (const r of ranges) sum += r.end - r.start;
  return sum;
}

/** The bytes covered by both sorted, disjoint range lists. */
export function overlapBytes(a: readonly Range[], b: readonly Range[]): number {
  let sum = 0;
  for (let i = 0, j = 0; i < a.length && j < b.length; ) {
    sum += Math.max(0, Math.min(a[i]!.end, b[j]!.end) - Math.max(a[i]!.start, b[j]!.start));
    if (a[i]!.end < b[j]!.end) i++;
    else j++;
  }
  return sum;
}

/** Appends [start, end) to sorted `ranges`, extending the last range when they touch. */
export function pushMerged(ranges: Range[], start: number, end: number): void {
  const last = ranges[ranges.length - 1];
  if (last && last.end === start) ranges[ranges.length - 1] = { start: last.start, end };
  else ranges.push({ start, end });
}
