/** A sorted set of disjoint, non-adjacent byte ranges [start, end). */
export interface Range {
  readonly start: number;
  readonly end: number;
}

/** Sorted, merged byte ranges with set operations; immutable. */
export class ExtentSet {
  readonly ranges: readonly Range[];

  private constructor(ranges: Range[]) {
    this.ranges = ranges;
  }

  static readonly empty = new ExtentSet([]);

  /** Builds a set from ranges in any order, dropping empty ones and merging overlaps and neighbours. */
  static from(ranges: Iterable<Range>): ExtentSet {
    const sorted = [...ranges].filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
    const merged: Range[] = [];
    for (const r of sorted) {
      const last = merged[merged.length - 1];
      if (last && r.start <= last.end) {
        if (r.end > last.end) merged[merged.length - 1] = { start: last.start, end: r.end };
      } else {
        merged.push({ start: r.start, end: r.end });
      }
    }
    return new ExtentSet(merged);
  }

  /** One range given by offset and length. */
  static of(offsetBytes: number, lengthBytes: number): ExtentSet {
    return ExtentSet.from([{ start: offsetBytes, end: offsetBytes + lengthBytes }]);
  }

  get totalBytes(): number {
    let sum = 0;
    for (const r of this.ranges) sum += r.end - r.start;
    return sum;
  }

  get isEmpty(): boolean {
    return this.ranges.length === 0;
  }

  union(other: ExtentSet): ExtentSet {
    return ExtentSet.from([...this.ranges, ...other.ranges]);
  }

  /** This set shifted by `deltaBytes` (volume-relative → disk-relative). */
  shift(deltaBytes: number): ExtentSet {
    return new ExtentSet(this.ranges.map((r) => ({ start: r.start + deltaBytes, end: r.end + deltaBytes })));
  }

  intersect(other: ExtentSet): ExtentSet {
    const out: Range[] = [];
    let i = 0;
    let j = 0;
    const a = this.ranges;
    const b = other.ranges;
    while (i < a.length && j < b.length) {
      const x = a[i]!;
      const y = b[j]!;
      const start = Math.max(x.start, y.start);
      const end = Math.min(x.end, y.end);
      if (end > start) out.push({ start, end });
      if (x.end < y.end) i++;
      else j++;
    }
    return new ExtentSet(out);
  }

  subtract(other: ExtentSet): ExtentSet {
    const out: Range[] = [];
    let j = 0;
    const b = other.ranges;
    for (const r of this.ranges) {
      let start = r.start;
      while (j < b.length && b[j]!.end <= start) j++;
      let k = j;
      while (k < b.length && b[k]!.start < r.end) {
        const y = b[k]!;
        if (y.start > start) out.push({ start, end: y.start });
        start = Math.max(start, y.end);
        k++;
      }
      if (start < r.end) out.push({ start, end: r.end });
    }
    return new ExtentSet(out);
  }

  /** Clips to [0, limitBytes). */
  clip(limitBytes: number): ExtentSet {
    return this.intersect(ExtentSet.of(0, limitBytes));
  }

  /** True when [start, end) lies wholly inside one range of the set. */
  covers(start: number, end: number): boolean {
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.ranges[mid]!;
      if (r.end <= start) lo = mid + 1;
      else if (r.start > start) hi = mid - 1;
      else return end <= r.end;
    }
    return false;
  }
}
