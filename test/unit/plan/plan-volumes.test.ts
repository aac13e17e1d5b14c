import { describe, expect, it } from 'vitest';
import { planVolumes, unmatchedNames } from '../../../src/plan/plan-volumes.js';
import type { ProbeResult } from '../../../src/fs/types.js';
import type { Volume } from '../../../src/layout/types.js';
import type { FreeMap } from '../../../src/fs/types.js';
import type { EngineChoice } from '../../../src/options.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';

const vol = (n: number): Volume => ({ name: `/dev/sda${n}`, offsetBytes: n * 1e6, sizeBytes: 1e6, kind: 'partition', partitionNumber: n });
const input = { ignore: [] as string[], zero: [] as string[], noZero: false, root: true, engine: 'auto' as EngineChoice };

function planOne(fs: ProbeResult, over: Partial<typeof input> = {}, freeMap?: FreeMap) {
  return planVolumes([{ volume: vol(1), fs, ...(freeMap ? { freeMap } : {}) }], { ...input, ...over })[0]!;
}

const trusted: FreeMap = { trusted: true, free: ExtentSet.of(4096, 8192), unitBytes: 4096, counterFreeBytes: 8192 };
const untrusted: FreeMap = { trusted: false, reason: 'the journal needs recovery' };

describe('planVolumes', () => {
  it('mounts the filesystems the kernel or ntfs-3g can trim', () => {
    for (const type of ['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'ntfs', 'vfat'] as const) {
      expect(planOne({ type }).action).toBe('mount');
    }
  });

  it('keeps the swap header, but leaves a hibernation image alone', () => {
    expect(planOne({ type: 'swap' }).action).toBe('swap');
    const hib = planOne({ type: 'swap', detail: 'swap with hibernation image', hibernated: true });
    expect(hib.action).toBe('keep');
    expect(hib.reason).toMatch(/hibernation/);
  });

  it('copies unknown, LUKS and LVM PVs as they are, saying why', () => {
    expect(planOne({ type: 'unknown' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/no filesystem/) });
    expect(planOne({ type: 'luks' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/LUKS/) });
    expect(planOne({ type: 'lvm-pv' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/LVM/) });
  });

  it('--ignore wins over --zero, --zero over the filesystem, --no-zero keeps everything', () => {
    expect(planOne({ type: 'ext4' }, { ignore: ['/dev/sda1'], zero: ['/dev/sda1'] }).action).toBe('keep');
    expect(planOne({ type: 'ext4' }, { zero: ['/dev/sda1'] }).action).toBe('zero');
    expect(planOne({ type: 'swap' }, { noZero: true }).action).toBe('keep');
    expect(planOne({ type: 'ext4' }, { noZero: true, zero: ['/dev/sda1'] }).action).toBe('zero');
  });

  it('without root nothing is mounted', () => {
    expect(planOne({ type: 'ext4' }, { root: false })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/root/) });
  });

  it('names given to --ignore/--zero that match nothing are reported', () => {
    expect(unmatchedNames(['/dev/sda1', '/dev/sdb9'], [vol(1)])).toEqual(['/dev/sdb9']);
  });

  it('a trusted free map makes it a map volume, unless --engine mount', () => {
    expect(planOne({ type: 'ext4' }, {}, trusted)).toMatchObject({ action: 'map', freeMap: trusted });
    expect(planOne({ type: 'vfat' }, { root: false }, trusted).action).toBe('map');
    expect(planOne({ type: 'swap' }, {}, trusted).action).toBe('map');
    expect(planOne({ type: 'ext4' }, { engine: 'mount' }, trusted).action).toBe('mount');
    expect(planOne({ type: 'swap' }, { engine: 'mount' }).action).toBe('swap');
  });

  it('an untrusted map is never used: the mount engine replays the journal, or the volume is left as it is', () => {
    const mounted = planOne({ type: 'ext4' }, {}, untrusted);
    expect(mounted.action).toBe('mount');
    expect(mounted.reason).toMatch(/journal needs recovery.*trimmed through a mount instead/);
    const kept = planOne({ type: 'ext4' }, { root: false }, untrusted);
    expect(kept).toMatchObject({ action: 'keep', warn: true });
    expect(kept.reason).toMatch(/journal needs recovery/);
    expect(planOne({ type: 'ext4' }, { engine: 'map' }, untrusted).action).toBe('keep');
    expect(planOne({ type: 'swap' }, {}, { trusted: false, reason: 'old SWAP-SPACE format' }).action).toBe('keep');
  });

  it('--engine map never mounts', () => {
    expect(planOne({ type: 'btrfs' }, { engine: 'map' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/--engine map/) });
  });

  it("an LVM PV's free extents are used whatever the engine", () => {
    expect(planOne({ type: 'lvm-pv' }, { engine: 'mount' }, trusted)).toMatchObject({ action: 'map', reason: expect.stringMatching(/LVM/) });
    expect(planOne({ type: 'lvm-pv' }, {}, untrusted)).toMatchObject({ action: 'keep', warn: true });
  });
});
