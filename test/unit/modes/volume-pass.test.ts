/** The volume pass dispatches only through the engine table, opens sessions lazily and keeps the belt. */
import { describe, expect, it } from 'vitest';
import { makeContext, silentLogger } from '../../../src/context.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import type { Engine, EngineTarget } from '../../../src/engines/engine.js';
import { mapEngine } from '../../../src/engines/map/engine.js';
import { mountEngine } from '../../../src/engines/mount/engine.js';
import type { Volume } from '../../../src/layout/types.js';
import { openVolumePass } from '../../../src/modes/volume-pass.js';
import { passNeeds } from '../../../src/plan/pass-needs.js';
import { planVolumes, type PlanInput, type VolumePlan } from '../../../src/plan/plan-volumes.js';
import { memoryDevice } from '../../helpers/mem-device.js';
import { refused } from '../../../src/util/verdict.js';

const KiB = 1024;
const vol = (n: number): Volume => ({ name: `/dev/sda${n}`, offsetBytes: n * 64 * KiB, sizeBytes: 64 * KiB, kind: 'partition', partitionNumber: n });
const input: PlanInput = { ignore: [], zero: [], noZero: false, engine: 'auto', root: false, appliance: refused('no libguestfs here') };

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

/**
 * The real map engine and the mount engine's own `accepts` (its session replaced by a recorder:
 * mounting needs root and a FUSE file), over ext4 with a trusted map, swap, xfs with no map and
 * ext4 whose map was refused: what each volume becomes under the user's choices and the host.
 */
describe('the pass under --engine, --zero, --no-zero, --ignore, root or not', () => {
  const free = ExtentSet.of(16 * KiB, 16 * KiB);
  const REFUSED = 'ext4 map not trusted (the journal needs recovery)';
  const probed = [
    { volume: vol(1), fs: { type: 'ext4' as const }, freeMap: { trusted: true as const, free, unitBytes: 4096, counterFreeBytes: free.totalBytes } },
    { volume: vol(2), fs: { type: 'swap' as const, blockSizeBytes: 4096 } },
    { volume: vol(3), fs: { type: 'xfs' as const } },
    { volume: vol(4), fs: { type: 'ext4' as const }, freeMap: { trusted: false as const, reason: 'the journal needs recovery' } },
  ];
  const MAPPED = [vol(1).offsetBytes + 16 * KiB, 16 * KiB];
  const SWAP = [vol(2).offsetBytes + 4096, 64 * KiB - 4096];

  /** The mount engine as the planner sees it, with a session that records instead of mounting. */
  function recordingMount() {
    const mounted: string[] = [];
    const events: string[] = [];
    const engine: Engine = {
      ...mountEngine,
      open: () => {
        events.push('open');
        return Promise.resolve({
          run: (plan: VolumePlan) => (mounted.push(plan.volume.name), Promise.resolve({ handled: 'trimmed', reason: plan.reason })),
          [Symbol.asyncDispose]: () => (events.push('dispose'), Promise.resolve()),
        });
      },
    };
    return { engine, mounted, events };
  }

  interface Scenario {
    over: Partial<PlanInput>;
    inPlace: boolean;
    handled: string[];
    reclaimed: (number | undefined)[];
    mounted: string[];
    zeroed: number[][];
    warnings: string[];
  }
  const scenarios: [string, Scenario][] = [
    [
      'auto as root, in place',
      {
        over: { root: true },
        inPlace: true,
        handled: ['free blocks discarded', 'swap cleared', 'trimmed', 'trimmed'],
        reclaimed: [16 * KiB, 60 * KiB, undefined, undefined],
        mounted: ['/dev/sda3', '/dev/sda4'],
        zeroed: [MAPPED, SWAP],
        warnings: [],
      },
    ],
    [
      'auto, not root (no mount engine), in place',
      {
        over: {},
        inPlace: true,
        handled: ['free blocks discarded', 'swap cleared', 'left alone', 'left alone'],
        reclaimed: [16 * KiB, 60 * KiB, undefined, undefined],
        mounted: [],
        zeroed: [MAPPED, SWAP],
        warnings: ['/dev/sda3: the mount engine needs root: left alone', `/dev/sda4: ${REFUSED}: left alone`],
      },
    ],
    [
      '--engine map as root, copy mode (nothing written: the copier skips the ranges)',
      {
        over: { engine: 'map', root: true },
        inPlace: false,
        handled: ['free blocks skipped', 'swap cleared', 'copied as is', 'copied as is'],
        reclaimed: [16 * KiB, 60 * KiB, undefined, undefined],
        mounted: [],
        zeroed: [],
        warnings: ['/dev/sda3: xfs: no trusted map, and --engine map does not mount: copied as is', `/dev/sda4: ${REFUSED}: copied as is`],
      },
    ],
    [
      '--engine mount as root, copy mode',
      {
        over: { engine: 'mount', root: true },
        inPlace: false,
        handled: ['trimmed', 'swap cleared', 'trimmed', 'trimmed'],
        reclaimed: [undefined, 60 * KiB, undefined, undefined],
        mounted: ['/dev/sda1', '/dev/sda3', '/dev/sda4'],
        zeroed: [],
        warnings: [],
      },
    ],
    [
      '--engine mount, not root, in place',
      {
        over: { engine: 'mount' },
        inPlace: true,
        handled: ['left alone', 'swap cleared', 'left alone', 'left alone'],
        reclaimed: [undefined, 60 * KiB, undefined, undefined],
        mounted: [],
        zeroed: [SWAP],
        warnings: ['/dev/sda1: the mount engine needs root: left alone', '/dev/sda3: the mount engine needs root: left alone', `/dev/sda4: ${REFUSED}: left alone`],
      },
    ],
    [
      '--no-zero with --zero of one volume, in place',
      {
        over: { noZero: true, zero: ['/dev/sda3'], root: true },
        inPlace: true,
        handled: ['left alone', 'left alone', 'zeroed', 'left alone'],
        reclaimed: [undefined, undefined, 64 * KiB, undefined],
        mounted: [],
        zeroed: [[vol(3).offsetBytes, 64 * KiB]],
        warnings: [],
      },
    ],
    [
      '--ignore wins over --zero, as root, copy mode',
      {
        over: { ignore: ['/dev/sda1', '/dev/sda4'], zero: ['/dev/sda4'], root: true },
        inPlace: false,
        handled: ['copied as is', 'swap cleared', 'trimmed', 'copied as is'],
        reclaimed: [undefined, 60 * KiB, undefined, undefined],
        mounted: ['/dev/sda3'],
        zeroed: [],
        warnings: [],
      },
    ],
  ];

  it.each(scenarios)('%s', async (_, s) => {
    const mount = recordingMount();
    const engines = [mapEngine, mount.engine];
    const { device, ctx, warnings, target } = setup(engines);
    const plans = planVolumes(probed, { ...input, ...s.over }, ExtentSet.empty, engines);
    const outcomes = [];
    {
      await using pass = openVolumePass(ctx, { ...target, inPlace: s.inPlace }, engines);
      for (const plan of plans) outcomes.push(await pass.run(plan));
    }
    expect(outcomes.map((o) => o.handled)).toEqual(s.handled);
    expect(outcomes.map((o) => o.reclaimedBytes)).toEqual(s.reclaimed);
    expect(outcomes.map((o) => o.reason)).toEqual(plans.map((p) => p.reason));
    expect(mount.mounted).toEqual(s.mounted);
    expect(mount.events).toEqual(s.mounted.length > 0 ? ['open', 'dispose'] : []);
    expect(device.zeroed).toEqual(s.zeroed);
    expect(warnings).toEqual(s.warnings);
  });
});

describe('the pass when an engine fails', () => {
  /** An engine taking every volume of type `takes`, whose run and dispose fail as asked. */
  function failing(id: string, takes: string, fail: { run?: boolean; dispose?: boolean }, events: string[]): Engine {
    return {
      ...fakeEngine().engine,
      id,
      accepts: ({ fs }) => (fs.type === takes ? { usable: true, reason: id } : { usable: false, reason: `not ${takes}`, blame: 'volume' }),
      open: () =>
        Promise.resolve({
          run: () => (fail.run ? Promise.reject(new Error(`${id} run failed`)) : Promise.resolve({ handled: 'faked', reason: id })),
          [Symbol.asyncDispose]: () => (events.push(`dispose ${id}`), fail.dispose ? Promise.reject(new Error(`${id} would not close`)) : Promise.resolve()),
        }),
    };
  }

  it('a failing run reaches the caller, and the session is still disposed, once', async () => {
    const events: string[] = [];
    const engines = [mapEngine, failing('fake', 'ext4', { run: true }, events)];
    const { plans, ctx, target } = setup(engines);
    const pass = openVolumePass(ctx, target, engines);
    await expect(pass.run(plans[0]!)).rejects.toThrow('fake run failed');
    await pass[Symbol.asyncDispose]();
    await pass[Symbol.asyncDispose]();
    expect(events).toEqual(['dispose fake']);
  });

  it('a session that will not close is a warning, and the sessions opened before it still close', async () => {
    const events: string[] = [];
    const engines = [mapEngine, failing('first', 'ext4', {}, events), failing('second', 'luks', { dispose: true }, events)];
    const { plans, ctx, target, warnings } = setup(engines);
    expect(plans.map((p) => p.engine)).toEqual(['first', 'map', 'first', 'second']);
    {
      await using pass = openVolumePass(ctx, target, engines);
      for (const plan of plans) await pass.run(plan);
    }
    expect(events).toEqual(['dispose second', 'dispose first']);
    expect(warnings).toEqual(['closing an engine: second would not close']);
  });
});
