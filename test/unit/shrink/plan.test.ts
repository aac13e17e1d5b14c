/** The shrink's pure parts: the decider table, the margin, and where partitions go. */
import { describe, expect, it } from 'vitest';
import type { FsType } from '../../../src/fs/types.js';
import type { Layout, Volume } from '../../../src/layout/types.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { decideShrink } from '../../../src/shrink/decide.js';
import { DEFAULT_SHRINK_MARGIN, marginBytes, parseShrinkMargin } from '../../../src/shrink/margin.js';
import { PARTITION_ALIGN_BYTES, planLayout } from '../../../src/shrink/plan.js';

const MiB = 1 << 20;
const GiB = 1 << 30;

function part(n: number, offsetBytes: number, sizeBytes: number): Volume {
  return { name: `/dev/sda${n}`, offsetBytes, sizeBytes, kind: 'partition', partitionNumber: n };
}

function layout(table: 'gpt' | 'mbr', volumes: Volume[], diskSizeBytes = 3 * GiB): Layout {
  return { table, diskSizeBytes, sectorSizeBytes: 512, volumes, notes: [], protectedRanges: ExtentSet.empty };
}

describe('decideShrink', () => {
  const p = part(1, MiB, GiB);
  const decide = (type: FsType, extra = {}) => decideShrink(p, { type, ...extra });

  it('ext2/3/4 are resized, swap is made again, xfs and unknown keep their size with the reason', () => {
    for (const t of ['ext2', 'ext3', 'ext4'] as const) expect(decide(t)).toEqual({ action: 'resize-ext' });
    expect(decide('swap')).toEqual({ action: 'remake-swap' });
    expect(decide('ntfs')).toEqual({ action: 'resize-ntfs' });
    expect(decide('ntfs', { dirty: true })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/chkdsk/) });
    expect(decide('xfs')).toEqual({ action: 'keep', reason: 'xfs cannot shrink: kept its size' });
    expect(decide('unknown')).toMatchObject({ action: 'keep', reason: expect.stringMatching(/never shrunk/) });
  });

  it('a dirty ext, a hibernated swap and a logical volume keep their size', () => {
    expect(decide('ext4', { dirty: true })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/journal needs recovery/) });
    expect(decide('swap', { hibernated: true })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/hibernation/) });
    expect(decideShrink({ ...p, kind: 'logical-volume' }, { type: 'ext4' })).toMatchObject({ action: 'keep' });
  });
});

describe('--shrink-margin', () => {
  it('takes bytes with K/M/G units or a percentage; the default is 5%', () => {
    expect(parseShrinkMargin('64M')).toEqual({ kind: 'bytes', bytes: 64 * MiB });
    expect(parseShrinkMargin('1GiB')).toEqual({ kind: 'bytes', bytes: GiB });
    expect(parseShrinkMargin('4096')).toEqual({ kind: 'bytes', bytes: 4096 });
    expect(parseShrinkMargin('10%')).toEqual({ kind: 'percent', percent: 10 });
    expect(DEFAULT_SHRINK_MARGIN).toEqual({ kind: 'percent', percent: 5 });
    expect(marginBytes(DEFAULT_SHRINK_MARGIN, 1000 * MiB)).toBe(50 * MiB);
    expect(marginBytes({ kind: 'bytes', bytes: 7 }, GiB)).toBe(7);
  });

  it('refuses what is not a size, as a usage error', () => {
    for (const bad of ['', 'big', '-1M', '5T', '150%']) expect(() => parseShrinkMargin(bad)).toThrow(expect.objectContaining({ code: 'USAGE' }));
  });
});

describe('planLayout', () => {
  it('GPT root shrunk, swap after it: the swap moves down to the next MiB, the disk ends after it plus the backup', () => {
    const root = part(1, MiB, 2815 * MiB);
    const swap = part(2, 2816 * MiB, 256 * MiB - 31 * 512);
    const plan = planLayout(layout('gpt', [root, swap]), [
      { volume: swap, newSizeBytes: swap.sizeBytes, keepBytes: 0 },
      { volume: root, newSizeBytes: 1000 * MiB + 512, keepBytes: 1000 * MiB + 512 },
    ], 33 * 512);
    expect(plan.places.get(1)).toEqual({ firstLba: 2048, sectors: (1000 * MiB + 512) / 512 });
    expect(plan.places.get(2)).toEqual({ firstLba: (1002 * MiB) / 512, sectors: swap.sizeBytes / 512 });
    expect(plan.moves).toEqual([]); // the swap's contents are made again, not copied
    // The swap (256 MiB less 31 sectors) and the backup (33 sectors) end 2 sectors into the next MiB: the disk ends at its end.
    expect(plan.newDiskBytes).toBe(1259 * MiB);
    expect(plan.newDiskBytes % MiB).toBe(0);
  });

  it('a kept partition after a shrunk one moves down with all its bytes, to a lower offset', () => {
    const a = part(1, MiB, 100 * MiB);
    const b = part(2, 200 * MiB, 50 * MiB);
    const plan = planLayout(layout('mbr', [a, b], GiB), [
      { volume: a, newSizeBytes: 10 * MiB, keepBytes: 10 * MiB },
      { volume: b, newSizeBytes: 50 * MiB, keepBytes: 50 * MiB },
    ], 0);
    expect(plan.moves).toEqual([{ name: '/dev/sda2', fromBytes: 200 * MiB, toBytes: 11 * MiB, lengthBytes: 50 * MiB }]);
    expect(plan.newDiskBytes).toBe(61 * MiB);
    expect(11 * MiB % PARTITION_ALIGN_BYTES).toBe(0);
  });

  it('never moves a partition up, and never grows the disk', () => {
    const a = part(1, 34 * 512, 100 * MiB);
    const plan = planLayout(layout('gpt', [a], 101 * MiB), [{ volume: a, newSizeBytes: 100 * MiB, keepBytes: 100 * MiB }], 33 * 512);
    expect(plan.places.get(1)!.firstLba).toBe(34);
    expect(plan.newDiskBytes).toBeLessThanOrEqual(101 * MiB);
  });

  it('MBR logical partitions keep their EBR gap before them: each EBR lands after the partition before it', () => {
    const p1 = part(1, MiB, 100 * MiB);
    const l5 = part(5, 102 * MiB, 100 * MiB);
    const l6 = part(6, 203 * MiB, 100 * MiB);
    const plan = planLayout(layout('mbr', [p1, l5, l6], GiB), [
      { volume: p1, newSizeBytes: 10 * MiB, keepBytes: 10 * MiB },
      { volume: l5, newSizeBytes: 20 * MiB + 512, keepBytes: 20 * MiB + 512 },
      { volume: l6, newSizeBytes: 100 * MiB, keepBytes: 100 * MiB },
    ], 0, new Map([[5, MiB], [6, 63 * 512]]));
    expect(plan.places.get(5)).toEqual({ firstLba: (12 * MiB) / 512, sectors: (20 * MiB + 512) / 512 });
    // l5 ends at 32 MiB + 512; l6's EBR (63 sectors before it) must lie at or after that end.
    expect(plan.places.get(6)!.firstLba).toBe((33 * MiB) / 512);
    expect(plan.places.get(6)!.firstLba - 63).toBeGreaterThanOrEqual((32 * MiB + 512) / 512);
    expect(plan.moves.map((m) => m.name)).toEqual(['/dev/sda5', '/dev/sda6']);
  });

  it('a logical partition whose EBR gap is not known is refused, naming the volume', () => {
    const l = part(5, 10 * MiB, MiB);
    expect(() => planLayout(layout('mbr', [l]), [{ volume: l, newSizeBytes: MiB, keepBytes: MiB }], 0)).toThrow(/\/dev\/sda5 is a logical partition/);
  });
});
