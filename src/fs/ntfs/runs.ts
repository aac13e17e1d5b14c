/**
 * NTFS data runs ("mapping pairs"): where a non-resident attribute's clusters lie. Linux-NTFS
 * project, "NTFS Documentation", section "Data Runs"; ntfs-3g runlist.c documents the same
 * encoding. Each run starts with a header byte: its low nibble is the size in bytes of the run
 * length, its high nibble the size of the LCN field; a header of 0 ends the array. The length
 * is unsigned in practice but stored in a signed field; the LCN field is a signed delta from
 * the previous run's LCN, so runs may go backwards; an LCN field of size 0 is a sparse run
 * (no clusters on disk, reads as zeros).
 */
import { badNtfs, type Where } from './common.js';

/** A run of clusters of an attribute: VCN (its position in the attribute) → LCN (on the volume). */
export interface DataRun {
  readonly vcn: number;
  /** First cluster on the volume; undefined for a sparse run. */
  readonly lcn: number | undefined;
  readonly clusters: number;
}

const END_OF_RUNS = 0x00;
const MAX_FIELD_BYTES = 8;

/** A little-endian two's-complement integer of `size` bytes (1 to 8). */
function signedField(bytes: Uint8Array, at: number, size: number): bigint {
  let value = 0n;
  for (let i = size - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i]!);
  const bits = BigInt(size * 8);
  return value >= 1n << (bits - 1n) ? value - (1n << bits) : value;
}

function safe(value: bigint): number | undefined {
  return value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER) ? undefined : Number(value);
}

/**
 * Decodes the mapping pairs in `bytes[start, end)` into runs starting at `firstVcn` (the
 * attribute extent's lowest VCN). The array ends at a 0 header or at `end`. Throws BAD_IMAGE
 * (offsets reported relative to `where`) for a truncated run, a zero or negative length, or an
 * LCN that goes below 0.
 */
export function parseDataRuns(bytes: Uint8Array, start: number, end: number, firstVcn: number, where: Where): DataRun[] {
  const runs: DataRun[] = [];
  let at = start;
  let vcn = firstVcn;
  let lcn = 0n;
  while (at < end && bytes[at] !== END_OF_RUNS) {
    const header = bytes[at]!;
    const lengthSize = header & 0x0f;
    const lcnSize = header >> 4;
    if (lengthSize === 0 || lengthSize > MAX_FIELD_BYTES || lcnSize > MAX_FIELD_BYTES) {
      badNtfs(where, at, `data run header 0x${header.toString(16)} has field sizes ${lengthSize} and ${lcnSize}`);
    }
    if (at + 1 + lengthSize + lcnSize > end) badNtfs(where, at, 'data run is truncated by the end of its attribute');
    const clusters = safe(signedField(bytes, at + 1, lengthSize));
    if (clusters === undefined || clusters <= 0) badNtfs(where, at, 'data run length is zero or negative');
    let runLcn: number | undefined;
    if (lcnSize > 0) {
      lcn += signedField(bytes, at + 1 + lengthSize, lcnSize);
      runLcn = safe(lcn);
      if (runLcn === undefined || runLcn < 0) badNtfs(where, at, `data run LCN ${lcn} is outside the volume`);
    }
    if (!Number.isSafeInteger(vcn + clusters)) badNtfs(where, at, 'data runs overflow the VCN range');
    runs.push({ vcn, lcn: runLcn, clusters });
    vcn += clusters;
    at += 1 + lengthSize + lcnSize;
  }
  return runs;
}

/** The total number of clusters the runs span (sparse runs included). */
export function runClusters(runs: readonly DataRun[]): number {
  let total = 0;
  for (const run of runs) total += run.clusters;
  return total;
}

/** Index of the run holding `vcn` in runs sorted by VCN, or -1. */
export function findRun(runs: readonly DataRun[], vcn: number): number {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const run = runs[mid]!;
    if (vcn < run.vcn) hi = mid - 1;
    else if (vcn >= run.vcn + run.clusters) lo = mid + 1;
    else return mid;
  }
  return -1;
}
