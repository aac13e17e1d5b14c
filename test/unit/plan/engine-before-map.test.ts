/** engineBeforeMap: the planner's answer as soon as a volume is probed, used to start the appliance's launch early. */
import { describe, expect, it } from 'vitest';
import type { FsType, ProbeResult } from '../../../src/fs/types.js';
import type { Volume } from '../../../src/layout/types.js';
import type { EngineChoice } from '../../../src/options.js';
import { engineBeforeMap, planVolumes } from '../../../src/plan/plan-volumes.js';

const volume: Volume = { name: '/dev/sda1', offsetBytes: 1 << 20, sizeBytes: 1 << 30, kind: 'partition', partitionNumber: 1 };
const input = { ignore: [] as string[], zero: [] as string[], noZero: false, root: false, engine: 'auto' as EngineChoice };
const early = (fs: ProbeResult, over: Partial<typeof input> = {}) => engineBeforeMap({ volume, fs }, { ...input, ...over });

describe('engineBeforeMap', () => {
  it('names the appliance for a dirty ext4 or xfs and for btrfs (no map to read), whatever root says', () => {
    for (const root of [false, true]) {
      expect(early({ type: 'ext4', dirty: true }, { root })).toBe('appliance');
      expect(early({ type: 'xfs', dirty: true }, { root })).toBe('appliance');
      expect(early({ type: 'btrfs' }, { root })).toBe('appliance');
    }
  });

  it('waits for the map of a clean filesystem that has a reader: a refused map may still send it to the appliance', () => {
    for (const type of ['ext4', 'xfs', 'ntfs', 'vfat', 'swap'] as FsType[]) expect(early({ type }), type).toBeUndefined();
  });

  it('follows the user: --engine appliance takes a clean ext4 at once; --engine map, --ignore, --zero and --no-zero never launch', () => {
    expect(early({ type: 'ext4' }, { engine: 'appliance' })).toBe('appliance');
    expect(early({ type: 'ext4', dirty: true }, { engine: 'map' })).toBeUndefined();
    expect(early({ type: 'btrfs' }, { engine: 'mount', root: true })).toBe('mount');
    expect(early({ type: 'btrfs' }, { ignore: ['/dev/sda1'] })).toBeUndefined();
    expect(early({ type: 'btrfs' }, { zero: ['/dev/sda1'] })).toBe('map');
    expect(early({ type: 'btrfs' }, { noZero: true })).toBeUndefined();
    expect(early({ type: 'unknown' })).toBeUndefined();
  });

  it('agrees with the plan made after the maps, with the appliance available', () => {
    for (const fs of [{ type: 'ext4', dirty: true }, { type: 'btrfs' }, { type: 'xfs', dirty: true }] as ProbeResult[]) {
      const plan = planVolumes([{ volume, fs }], { ...input, appliance: { ok: true } })[0]!;
      expect(early(fs)).toBe(plan.engine);
    }
  });
});
