import { describe, expect, it } from 'vitest';
import { BatchProgress, batchProgressLine } from '../../../src/batch/batch-progress.js';

const MiB = 1024 * 1024;

describe('batch progress', () => {
  it('counts finished and failed disks and sums what the done ones reclaimed', () => {
    const p = new BatchProgress([100, 100, 100], 0);
    expect(batchProgressLine(p.settle(0, 10_000, 64 * MiB))).toBe('Batch: 1 of 3 disks finished, 64 MiB reclaimed so far, about 0:20 left');
    expect(batchProgressLine(p.settle(2, 20_000, undefined))).toBe('Batch: 2 of 3 disks finished (1 failed), 64 MiB reclaimed so far, about 0:10 left');
    expect(batchProgressLine(p.settle(1, 30_000, MiB))).toBe('Batch: 3 of 3 disks finished (1 failed), 65 MiB reclaimed so far');
  });

  it('weighs the time left by each disk’s size, not by the count of disks', () => {
    const p = new BatchProgress([10, 10, 980], 0);
    p.settle(0, 1000, 0);
    // 10 of 1000 weighed in 1 s: 99 s left, though a third of the disks is done.
    expect(p.settle(1, 2000, 0).etaSeconds).toBeCloseTo(98);
  });

  it('starts from the disks an earlier run finished (--resume), with what they reclaimed', () => {
    const p = new BatchProgress([50], 0, { finished: 2, failed: 1, reclaimedBytes: 3 * MiB });
    expect(batchProgressLine(p.settle(0, 5000, MiB))).toBe('Batch: 3 of 3 disks finished (1 failed), 4.0 MiB reclaimed so far');
  });
});
