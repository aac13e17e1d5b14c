/** The volume pass dispatches only through the engine table, opens sessions lazily and keeps the belt. */
import { describe, expect, it } from 'vitest';
import { makeContext, silentLogger } from '../../../src/context.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import type { Engine, EngineTarget } from '../../../src/engines/engine.js';
import { mapEngine } from '../../../src/engines/map/engine.js';
import type { Volume } from '../../../src/layout/types.js';
import { openVolumePass } from '../../../src/modes/volume-pass.js';
import { passNeeds } from '../../../src/plan/pass-needs.js';
import { planVolumes, type PlanInput, type VolumePlan } from '../../../src/plan/plan-volumes.js';
import { memoryDevice } from '../../helpers/mem-device.js';

const KiB = 1024;
const vol = (n: number): Volume => ({ name: `/dev/sda${n}`, offsetBytes: n * 64 * KiB, sizeBytes: 64 * KiB, kind: 'partition', partitionNumber: n });
const input: PlanInput = { ignore: [], zero: [], noZero: false, engine: 'auto', root: false };

/** An engine that takes ext4 (root or not), records what it gets, and scribbles over its volume. */
function fakeEngine() {
  const seen: string[] = [];
  const events: string[] = [];
  const engine: Engine = {
    id: 'fake',
    tools: ['fake-tool'],
    needsOverlay: true,
    needsFuseFile: false,
    verbs: ['Faking', 'Faking in place'],
    does: 'fake',
    accepts: ({ fs }) => (fs.type === 'ext4' ? { usable: true, reason: 'ext4: taken by the fake' } : { usable: false, reason: 'not ext4', blame: 'volume' }),
    open: (_ctx, target: EngineTarget) => {
      events.push('open');
      return Promise.resolve({
        run: async (plan: VolumePlan) => {
          seen.push(plan.volume.name);
          await target.device.write(plan.volume.offsetBytes, new Uint8Array(plan.volume.sizeBytes).fill(0xee));
          return { handled: 'faked', reason: plan.reason };
        },
        [Symbol.asyncDispose]: () => (events.push('dispose'), Promise.resolve()),
      });
    },
  };
  return { engine, seen, events };
}

function setup(engines: readonly Engine[], over: Partial<PlanInput> = {}, protectedRanges = ExtentSet.empty) {
  const probed = [
    { volume: vol(1), fs: { type: 'ext4' as const } },
    { volume: vol(2), fs: { type: 'swap' as const, blockSizeBytes: 4096 } },
    { volume: vol(3), fs: { type: 'ext4' as const } },
    { volume: vol(4), fs: { type: 'luks' as const } },
  ];
  const plans = planVolumes(probed, { ...input, ...over }, protectedRanges, engines);
  const bytes = new Uint8Array(6 * 64 * KiB).fill(0x11);
  const device = memoryDevice(bytes);
  const warnings: string[] = [];
  const ctx = makeContext({ ...silentLogger, warn: (m) => void warnings.push(m) });
  return { plans, bytes, device, warnings, ctx, target: { device, workDir: '/nonexistent', inPlace: true } };
}

describe('the engine table is the only dispatch', () => {
  it('a registered fake engine gets its volumes, its tools are the preflight, its session opens once and is disposed once', async () => {
    const fake = fakeEngine();
    const engines = [mapEngine, fake.engine];
    const { plans, ctx, target, bytes } = setup(engines);
    expect(plans.map((p) => [p.action, p.engine])).toEqual([['fake', 'fake'], ['swap', 'map'], ['fake', 'fake'], ['keep', undefined]]);
    expect(passNeeds(plans, engines)).toEqual({ engines: ['map', 'fake'], tools: ['fake-tool'], overlay: true, overlayVolumes: 2 });
    {
      await using pass = openVolumePass(ctx, target, engines);
      const outcomes = [];
      for (const plan of plans) outcomes.push(await pass.run(plan));
      expect(outcomes.map((o) => o.handled)).toEqual(['faked', 'swap cleared', 'faked', 'left alone']);
      expect(fake.events).toEqual(['open']);
    }
    expect(fake.events).toEqual(['open', 'dispose']);
    expect(fake.seen).toEqual(['/dev/sda1', '/dev/sda3']);
    expect(bytes[vol(1).offsetBytes]).toBe(0xee);
    expect(bytes[vol(4).offsetBytes]).toBe(0x11);
  });

  it('an engine no volume is planned for is never opened', async () => {
    const fake = fakeEngine();
    const { plans, ctx, target } = setup([mapEngine, fake.engine], { engine: 'map' });
    expect(plans.map((p) => p.action)).toEqual(['keep', 'swap', 'keep', 'keep']);
    expect(plans[0]!.reason).toBe('ext4: no trusted map, and --engine map does not fake');
    await using pass = openVolumePass(ctx, target, [mapEngine, fake.engine]);
    for (const plan of plans) await pass.run(plan);
    expect(fake.events).toEqual([]);
  });

  it('a plan naming an engine not in the table fails rather than being handled some other way', async () => {
    const { plans, ctx, target } = setup([mapEngine, fakeEngine().engine]);
    await using pass = openVolumePass(ctx, target, [mapEngine]);
    await expect(pass.run(plans[0]!)).rejects.toThrow(/no engine fake/);
  });
});

describe('the volume pass', () => {
  it('writes back protected bytes an engine changed, with a warning', async () => {
    const fake = fakeEngine();
    const ebr = ExtentSet.of(vol(1).offsetBytes + 8 * KiB, 512);
    const { plans, ctx, target, bytes, warnings } = setup([mapEngine, fake.engine], {}, ebr);
    await using pass = openVolumePass(ctx, target, [mapEngine, fake.engine]);
    await pass.run(plans[0]!);
    expect(bytes[vol(1).offsetBytes]).toBe(0xee);
    expect([...bytes.subarray(vol(1).offsetBytes + 8 * KiB, vol(1).offsetBytes + 8 * KiB + 512)].every((b) => b === 0x11)).toBe(true);
    expect(warnings).toEqual([expect.stringMatching(/^\/dev\/sda1: the fake pass changed partition-table or LVM structures/)]);
  });

  it('in place, --zero and swap are discarded by the map engine, never a protected byte', async () => {
    const ebr = ExtentSet.of(vol(3).offsetBytes + 4 * KiB, 512);
    const { plans, target, ctx, device } = setup([mapEngine], { zero: ['/dev/sda3'] }, ebr);
    await using pass = openVolumePass(ctx, target, [mapEngine]);
    expect(await pass.run(plans[2]!)).toEqual({ handled: 'zeroed', reason: 'zeroed as asked (--zero)', reclaimedBytes: 64 * KiB - 512 });
    expect(await pass.run(plans[1]!)).toMatchObject({ handled: 'swap cleared', reclaimedBytes: 64 * KiB - 4096 });
    expect(device.zeroed).toEqual([
      [vol(3).offsetBytes, 4 * KiB],
      [vol(3).offsetBytes + 4 * KiB + 512, 60 * KiB - 512],
      [vol(2).offsetBytes + 4096, 64 * KiB - 4096],
    ]);
  });

  it('a volume left alone is never given to an engine; one left alone against the user warns', async () => {
    const { plans, target, ctx, warnings, device } = setup([mapEngine], { ignore: ['/dev/sda1'] });
    await using pass = openVolumePass(ctx, { ...target, inPlace: false }, [mapEngine]);
    expect(await pass.run(plans[0]!)).toEqual({ handled: 'copied as is', reason: 'ignored (--ignore)' });
    expect(await pass.run(plans[3]!)).toEqual({ handled: 'copied as is', reason: 'luks: not handled' });
    expect(warnings).toEqual(['/dev/sda4: luks: not handled: copied as is']);
    expect(device.zeroed).toEqual([]);
  });

  it('--no-zero hands nothing to any engine', async () => {
    const fake = fakeEngine();
    const { plans } = setup([mapEngine, fake.engine], { noZero: true });
    expect(plans.every((p) => p.action === 'keep' && !p.warn)).toBe(true);
    expect(passNeeds(plans, [mapEngine, fake.engine]).tools).toEqual([]);
  });
});
