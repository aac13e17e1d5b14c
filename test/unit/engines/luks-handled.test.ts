/** The report's "Handled" for a LUKS volume: how much ciphertext was dropped, and that free blocks now read as noise. */
import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import type { EngineTarget } from '../../../src/engines/engine.js';
import { makeZero } from '../../../src/engines/map/zeroing.js';
import type { FreeMap } from '../../../src/fs/types.js';
import type { Volume } from '../../../src/layout/types.js';
import { planVolumes, type PlanInput } from '../../../src/plan/plan-volumes.js';
import { refused } from '../../../src/util/verdict.js';
import { memoryDevice } from '../../helpers/mem-device.js';

const MiB = 1024 * 1024;
const volume: Volume = { name: '/dev/sda2', offsetBytes: MiB, sizeBytes: 8 * MiB, kind: 'partition', partitionNumber: 2 };
const input: PlanInput = { ignore: [], zero: [], noZero: false, engine: 'auto', root: false, appliance: refused('no libguestfs here') };
/** 3 MiB of ciphertext sectors free inside, after a 2 MiB header (volume offsets). */
const freeMap: FreeMap = { trusted: true, free: ExtentSet.of(2 * MiB, 3 * MiB), unitBytes: 512, counterFreeBytes: 3 * MiB, detail: 'LUKS2: ciphertext of the free blocks of /dev/vg/root dropped' };
const header = ExtentSet.of(MiB, 2 * MiB);

describe('makeZero on a LUKS volume', () => {
  it.each([
    ['copy', false, '3.0 MiB ciphertext skipped; free blocks read as noise'],
    ['in place', true, '3.0 MiB ciphertext discarded; free blocks read as noise'],
  ])('%s: says how much ciphertext was dropped and that the guest reads noise there', async (_mode, inPlace, handled) => {
    const [plan] = planVolumes([{ volume, fs: { type: 'luks' }, freeMap }], input, header);
    expect(plan!.action).toBe('map');
    const device = memoryDevice(new Uint8Array(10 * MiB).fill(0xa5));
    const target: EngineTarget = { device, workDir: '/nonexistent', inPlace };
    const outcome = await makeZero(plan!, target);
    expect(outcome.handled).toBe(handled);
    expect(outcome.reclaimedBytes).toBe(3 * MiB);
    expect(outcome.reason).toBe(freeMap.detail);
    expect(device.zeroed).toEqual(inPlace ? [[3 * MiB, 3 * MiB]] : []);
  });

  it('an ext4 volume keeps its own wording', async () => {
    const [plan] = planVolumes([{ volume, fs: { type: 'ext4' }, freeMap }], input, ExtentSet.empty);
    const outcome = await makeZero(plan!, { device: memoryDevice(new Uint8Array(10 * MiB)), workDir: '/nonexistent', inPlace: false });
    expect(outcome.handled).toBe('free blocks skipped');
  });
});
