import { describe, expect, it } from 'vitest';
import { batchLines, batchTotal, reclaimedBytesOf, type DiskOutcome } from '../../../src/batch/batch-report.js';
import { defaultJobs } from '../../../src/batch/jobs.js';
import type { RunReport } from '../../../src/report/types.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const inPlace = (before: number, after: number) => ({ mode: 'in-place', input: { path: '/x', format: 'raw', virtualSizeBytes: GiB, allocatedBytes: before }, allocatedBytesAfter: after }) as unknown as RunReport;
const copy = (before: number, out: number) =>
  ({ mode: 'copy', input: { path: '/x', format: 'raw', virtualSizeBytes: GiB, allocatedBytes: before }, output: { path: '/o', format: 'raw', compressed: false, allocatedBytes: out } }) as unknown as RunReport;

describe('batch report', () => {
  it('what a disk reclaimed: before less after in place, less the output in copy mode', () => {
    expect(reclaimedBytesOf(inPlace(100 * MiB, 30 * MiB))).toBe(70 * MiB);
    expect(reclaimedBytesOf(copy(100 * MiB, 10 * MiB))).toBe(90 * MiB);
  });

  it('totals count failed disks apart and sum what the finished ones reclaimed; one line per disk', () => {
    const disks: DiskOutcome[] = [
      { domain: 'web', target: 'vda', source: '/i/web.qcow2', status: 'done', report: inPlace(100 * MiB, 36 * MiB) },
      { source: '/i/bad.img', status: 'failed', error: 'not a disk image' },
      { source: '/i/db.raw', status: 'done', report: inPlace(10 * MiB, 9 * MiB) },
    ];
    expect(batchTotal(disks)).toEqual({ disks: 3, done: 2, failed: 1, reclaimedBytes: 65 * MiB });
    expect(batchLines([{ name: 'busy', connection: null, status: 'failed', error: 'domain ‘busy’ is running', skipped: [] }], disks)).toEqual([
      'busy: FAILED: domain ‘busy’ is running',
      'web/vda (/i/web.qcow2): done, 64 MiB reclaimed',
      '/i/bad.img: FAILED: not a disk image',
      '/i/db.raw: done, 1.0 MiB reclaimed',
      'Total: 2 of 3 disks done, 1 failed, 65 MiB reclaimed',
    ]);
  });
});

describe('batch report: backing chains', () => {
  it("a copied disk's line says whether its chain was flattened or kept, with the base", () => {
    const chained = (chain: RunReport['chain']) => ({ ...copy(100 * MiB, 10 * MiB), chain }) as RunReport;
    const disks: DiskOutcome[] = [
      { domain: 'a', target: 'vda', source: '/i/a.qcow2', status: 'done', report: chained({ handled: 'kept', base: '/i/base.qcow2' }) },
      { domain: 'b', target: 'vda', source: '/i/b.qcow2', status: 'done', report: chained({ handled: 'flattened', base: '/i/base.qcow2' }) },
    ];
    expect(batchLines([], disks).slice(0, 2)).toEqual([
      'a/vda (/i/a.qcow2): done, 90 MiB reclaimed, kept the backing chain (/i/base.qcow2)',
      'b/vda (/i/b.qcow2): done, 90 MiB reclaimed, flattened (backing file /i/base.qcow2)',
    ]);
  });
});

describe('defaultJobs', () => {
  it('one per core, no more than the disks, a GiB of memory each, at least one', () => {
    expect(defaultJobs(8, 2, 24 * GiB)).toBe(2);
    expect(defaultJobs(1, 8, 24 * GiB)).toBe(1);
    expect(defaultJobs(8, 8, 3 * GiB)).toBe(3);
    expect(defaultJobs(0, 2, GiB / 2)).toBe(1);
  });
});
