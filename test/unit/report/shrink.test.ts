import { describe, expect, it } from 'vitest';
import { formatShrink } from '../../../src/report/shrink.js';
import { formatSummary } from '../../../src/report/summary.js';
import type { ShrinkReport } from '../../../src/shrink/run.js';
import { copyReport } from './report-fixtures.js';

const MiB = 1 << 20;
const shrink: ShrinkReport = {
  virtualSizeBeforeBytes: 3072 * MiB,
  virtualSizeAfterBytes: 1102 * MiB,
  volumes: [
    { name: '/dev/sda1', oldOffsetBytes: MiB, newOffsetBytes: MiB, oldSizeBytes: 2815 * MiB, newSizeBytes: 1000 * MiB, action: 'resized', minimumBytes: 950 * MiB, marginBytes: 50 * MiB, filesChecked: 31_204 },
    { name: '/dev/sda2', oldOffsetBytes: 2816 * MiB, newOffsetBytes: 1001 * MiB, oldSizeBytes: 256 * MiB, newSizeBytes: 256 * MiB, action: 'remade' },
    { name: '/dev/sda3', oldOffsetBytes: 3000 * MiB, newOffsetBytes: 1257 * MiB, oldSizeBytes: 64 * MiB, newSizeBytes: 64 * MiB, action: 'kept', reason: 'xfs cannot shrink: kept its size' },
  ],
};

describe('the closing text of --shrink', () => {
  it('says the virtual size before and after, and per volume its old and new size (and how many files were found identical), or why it kept it, and how far it moved', () => {
    expect(formatShrink(shrink)).toEqual([
      'Shrunk: virtual size 3.0 GiB -> 1.1 GiB',
      '  /dev/sda1  resized 2.7 GiB -> 1000 MiB (minimum 950 MiB + margin 50 MiB), 31204 files identical',
      '  /dev/sda2  swap made again, 256 MiB, UUID and label kept, moved down 1.8 GiB',
      '  /dev/sda3  kept 64 MiB: xfs cannot shrink: kept its size, moved down 1.7 GiB',
    ]);
  });

  it('is part of the summary when the run shrank the disk, and absent otherwise', () => {
    expect(formatSummary({ ...copyReport(), shrink })).toContain('\nShrunk: virtual size 3.0 GiB -> 1.1 GiB\n  /dev/sda1  resized');
    expect(formatSummary(copyReport())).not.toContain('Shrunk:');
  });
});
