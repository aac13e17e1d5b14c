/** What a plan zeroes never includes a protected byte, whatever the action. */
import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { planVolumes, type PlanInput } from '../../../src/plan/plan-volumes.js';
import type { FreeMap } from '../../../src/fs/types.js';
import type { Volume } from '../../../src/layout/types.js';
import { zeroingRanges } from '../../../src/modes/volume-pass.js';
import { refused } from '../../../src/util/verdict.js';

const MiB = 1024 * 1024;
const volume: Volume = { name: '/dev/sda5', offsetBytes: 10 * MiB, sizeBytes: 20 * MiB, kind: 'partition', partitionNumber: 5 };
/** An EBR in the volume's free space, and one sector outside the volume. */
const ebr = { start: 22 * MiB, end: 22 * MiB + 512 };
const PROTECTED = ExtentSet.from([ebr, { start: 0, end: 512 }]);
const input: PlanInput = { ignore: [], zero: [], noZero: false, engine: 'auto', root: false, appliance: refused('no libguestfs here') };
const freeMap: FreeMap = { trusted: true, free: ExtentSet.of(MiB, 18 * MiB), unitBytes: 4096, counterFreeBytes: 18 * MiB };

describe('zeroingRanges', () => {
  it('carries into each plan only the protected bytes inside its volume', () => {
    const [plan] = planVolumes([{ volume, fs: { type: 'ext4' }, freeMap }], input, PROTECTED);
    expect(plan!.protectedRanges.ranges).toEqual([ebr]);
  });

  it.each([
    ['a trusted free map', { type: 'ext4' as const }, {}, ExtentSet.of(11 * MiB, 18 * MiB)],
    ['--zero', { type: 'ext4' as const }, { zero: ['/dev/sda5'] }, ExtentSet.of(10 * MiB, 20 * MiB)],
    ['swap', { type: 'swap' as const, blockSizeBytes: 4096 }, { engine: 'mount' as const }, ExtentSet.of(10 * MiB + 4096, 20 * MiB - 4096)],
  ])('leaves the EBR out of %s', (_what, fs, extra, whole) => {
    const [plan] = planVolumes([{ volume, fs, ...(fs.type === 'ext4' ? { freeMap } : {}) }], { ...input, ...extra }, PROTECTED);
    const zeroed = zeroingRanges(plan!);
    expect(zeroed.intersect(ExtentSet.from([ebr])).isEmpty).toBe(true);
    expect(zeroed.ranges).toEqual(whole.subtract(ExtentSet.from([ebr])).ranges);
  });

  it.each([
    ['4 KiB', 4096, 4096],
    ['64 KiB', 65536, 65536],
    // Not probed: the largest page size the kernel uses, so no signature is ever cleared.
    ['unknown', undefined, 65536],
  ])('keeps the whole first page of a swap area with %s pages (--engine mount)', (_what, pageBytes, headerBytes) => {
    const fs = { type: 'swap' as const, ...(pageBytes ? { blockSizeBytes: pageBytes } : {}) };
    const [plan] = planVolumes([{ volume, fs }], { ...input, engine: 'mount' }, ExtentSet.empty);
    expect(plan!.action).toBe('swap');
    expect(zeroingRanges(plan!).ranges).toEqual([{ start: volume.offsetBytes + headerBytes, end: volume.offsetBytes + volume.sizeBytes }]);
  });
});
