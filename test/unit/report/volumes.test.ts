import { describe, expect, it } from 'vitest';
import { reclaimedBytes, volumeReports } from '../../../src/report/volumes.js';
import { plan, result } from './report-fixtures.js';

describe('volumeReports: one report row per VolumeResult', () => {
  it('carries the plan, the outcome and what was reclaimed, in the order of the results', () => {
    const results = [
      result(plan(1, 'ext4', 'mount', 'ext4: no trusted map'), { handled: 'trimmed', reason: 'ext4: trimmed through a mount' }, 1000, 5000),
      result(plan(2, 'vfat', 'keep', '--ignore', 'FAT32'), { handled: 'copied as is', reason: '--ignore' }, 0, 0),
    ];
    expect(volumeReports(results)).toEqual([
      {
        name: '/dev/sda1',
        type: 'ext4',
        offsetBytes: 1024 * 1024,
        sizeBytes: 100 * 1024 * 1024,
        action: 'mount',
        engine: 'mount',
        handled: 'trimmed',
        reason: 'ext4: trimmed through a mount',
        reclaimedBytes: 4000,
      },
      {
        name: '/dev/sda2',
        type: 'vfat',
        detail: 'FAT32',
        offsetBytes: 2 * 1024 * 1024,
        sizeBytes: 100 * 1024 * 1024,
        action: 'keep',
        handled: 'copied as is',
        reason: '--ignore',
        reclaimedBytes: 0,
      },
    ]);
  });

  it("the outcome's reason, not the plan's, is the row's", () => {
    const [row] = volumeReports([result(plan(1, 'xfs', 'map', 'planned reason'), { handled: 'free blocks skipped', reason: 'what happened' }, 0, 0)]);
    expect(row!.reason).toBe('what happened');
  });

  it('keeps the keys in the order users of the JSON report have seen', () => {
    const [row] = volumeReports([result(plan(1, 'ntfs', 'map', 'r', 'NTFS 3.1'), { handled: 'h', reason: 'r' }, 0, 0)]);
    expect(Object.keys(row!)).toEqual(['name', 'type', 'detail', 'offsetBytes', 'sizeBytes', 'action', 'engine', 'handled', 'reason', 'reclaimedBytes']);
  });

  it('carries the engine the planner named for each volume, none for a kept one', () => {
    const rows = volumeReports(
      (['appliance', 'zero', 'swap', 'keep'] as const).map((action, i) => result(plan(i + 1, 'btrfs', action, 'r'), { handled: 'h', reason: 'r' }, 0, 0)),
    );
    expect(rows.map((r) => r.engine)).toEqual(['appliance', 'map', 'map', undefined]);
  });
});

describe('reclaimedBytes', () => {
  const p = plan(1, 'ext4', 'map', 'trusted map');

  it('is what newly reads as zero after the pass', () => {
    expect(reclaimedBytes(result(p, { handled: 'trimmed', reason: 'r' }, 4096, 10_000))).toBe(10_000 - 4096);
  });

  it('is never negative (a mount may write into free space it then trims less of)', () => {
    expect(reclaimedBytes(result(p, { handled: 'trimmed', reason: 'r' }, 10_000, 4096))).toBe(0);
  });

  it("is the engine's own count when it gave one (copy mode skips mapped space without writing it)", () => {
    expect(reclaimedBytes(result(p, { handled: 'free blocks skipped', reason: 'r', reclaimedBytes: 777 }, 0, 0))).toBe(777);
    expect(reclaimedBytes(result(p, { handled: 'free blocks skipped', reason: 'r', reclaimedBytes: 0 }, 0, 9999))).toBe(0);
  });
});
