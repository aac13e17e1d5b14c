import type { RunContext } from '../context.js';
import { isSparsifyError } from '../errors.js';
import { sliceReader, type BlockDevice, type BlockReader } from '../disk/types.js';
import { ExtentSet } from '../disk/extent-set.js';
import { restoreChangedBytes, saveBytes } from '../disk/saved-bytes.js';
import { quietSteps, type Engine, type EngineSession, type EngineSteps, type EngineTarget, type VolumeOutcome } from '../engines/engine.js';
import { readVolumeFreeMap } from '../engines/map/free-map.js';
import { APPLIANCE_ENGINE, ENGINES, engineById } from '../engines/registry.js';
import { passNeeds, type PassNeeds } from '../plan/pass-needs.js';
import { engineBeforeMap, hostKernelNotice, planVolumesAskingHost, shouldReadFreeMap, unmatchedNames, type LazyPlanInput, type ProbedVolume, type VolumePlan } from '../plan/plan-volumes.js';
import { probeVolume } from '../fs/probe.js';
import { readLayout } from '../layout/read-layout.js';
import { readLvm } from '../layout/lvm.js';
import { lvmStructureRanges, probeLvmPv } from '../layout/lvm-pv.js';
import type { Layout, Volume } from '../layout/types.js';
import type { FreeMap } from '../fs/types.js';
import { AsyncStack } from '../util/async-stack.js';
import { openKeyStore } from '../keys/key-store.js';
import { readLuksVolume } from './luks-volume.js';
import { preflight } from './preflight.js';

export { zeroingRanges } from '../engines/map/zeroing.js';
export type { VolumeOutcome } from '../engines/engine.js';

/** The disk's layout and the plan for each of its volumes. */
export interface Examined {
  readonly layout: Layout;
  readonly plans: readonly VolumePlan[];
  /**
   * Every partition-table and LVM structure found (disk offsets): the layout's, and each PV's
   * label and metadata areas. Subtracted from whatever a plan zeroes, trims or discards.
   */
  readonly protectedRanges: ExtentSet;
  /** What the chosen engines need: their programs (already checked) and an overlay. */
  readonly needs: PassNeeds;
}

/** What a mode may do while the disk is examined. */
export interface ExamineHooks {
  /**
   * Called once, as soon as a probed volume is known to go to the appliance (the planner's
   * engineBeforeMap), before the other volumes are probed and their maps read: the mode may start
   * its launch then (appliance/prelaunch.ts). Not awaited; the final plans still decide.
   */
  readonly applianceNeeded?: () => void;
}

/**
 * Reads the partition table, probes every volume, reads the free maps the planner asks for,
 * plans what to do with each volume (asking whether the appliance can run only when some volume
 * would use it), and checks the programs of the engines it chose. What takes long on its own
 * (deriving a LUKS key) runs as a step of `steps`, so the caller's task list shows it.
 */
export async function examineDisk(
  ctx: RunContext,
  device: BlockReader,
  input: LazyPlanInput,
  engines: readonly Engine[] = ENGINES,
  steps: EngineSteps = quietSteps,
  hooks: ExamineHooks = {},
): Promise<Examined> {
  const layout = await readLayoutOrNothing(ctx, device, input.noZero);
  for (const note of layout.notes) ctx.log.warn(note);
  const ignore = [...input.ignore];
  const probed: ProbedVolume[] = [];
  let applianceNeeded = hooks.applianceNeeded;
  const probe = async (volume: Volume) => {
    const fs = await probeVolume(sliceReader(device, volume.offsetBytes, volume.sizeBytes));
    probed.push({ volume, fs });
    if (applianceNeeded && engineBeforeMap({ volume, fs }, input, ignore, engines) === APPLIANCE_ENGINE) {
      applianceNeeded();
      applianceNeeded = undefined;
    }
    return fs;
  };
  const vgNames: string[] = [];
  let protectedRanges = layout.protectedRanges;
  const keys = input.keys ? openKeyStore(input.keys) : undefined;
  for (const volume of layout.volumes) {
    const type = (await probe(volume)).type;
    if (type === 'luks' && shouldReadFreeMap(probed[probed.length - 1]!, input)) {
      const luks = await readLuksVolume(ctx, device, volume, keys, steps);
      protectedRanges = protectedRanges.union(luks.structures);
      probed[probed.length - 1] = { ...probed[probed.length - 1]!, freeMap: luks.freeMap };
    }
    if (type !== 'lvm-pv') continue;
    const lvm = await readPhysicalVolume(ctx, device, volume);
    protectedRanges = protectedRanges.union(lvm.structures);
    probed[probed.length - 1] = { ...probed[probed.length - 1]!, freeMap: lvm.pvFreeMap };
    vgNames.push(lvm.vgName);
    // --ignore VG leaves the whole group alone: its logical volumes and its free extents.
    if (input.ignore.includes(lvm.vgName)) ignore.push(volume.name, ...lvm.volumes.map((v) => v.name));
    for (const lv of lvm.volumes) await probe(lv);
  }
  for (const [i, p] of probed.entries()) {
    const freeMap = shouldReadFreeMap(p, input, ignore) ? await readVolumeFreeMap(device, p.volume, p.fs) : p.freeMap;
    if (freeMap && !freeMap.trusted) ctx.log.debug(`${p.volume.name}: ${p.fs.type} map not trusted: ${freeMap.reason}`);
    probed[i] = { ...p, ...(freeMap ? { freeMap } : {}) };
  }
  const names = probed.map((p) => p.volume.name);
  for (const name of unmatchedNames([...input.ignore, ...input.zero], probed.map((p) => p.volume)).filter((n) => !vgNames.includes(n))) {
    ctx.log.warn(`${name}: no such filesystem or volume group on this disk (volumes: ${names.join(', ')})`);
  }
  const plans = await planVolumesAskingHost(probed, { ...input, ignore }, protectedRanges, engines);
  const notice = hostKernelNotice(plans, input);
  if (notice) ctx.log.warn(notice);
  const needs = passNeeds(plans, engines);
  await preflight(needs.tools);
  return { layout, plans, protectedRanges, needs };
}

/**
 * The partition table; with --no-zero a table that cannot be read is no error (nothing is
 * done per volume anyway): the disk is copied as it is, with a warning.
 */
async function readLayoutOrNothing(ctx: RunContext, device: BlockReader, noZero: boolean): Promise<Layout> {
  try {
    return await readLayout(device);
  } catch (err) {
    if (!noZero || !isSparsifyError(err, 'BAD_LAYOUT')) throw err;
    ctx.log.warn(`${err.message}: the disk is copied as it is (--no-zero)`);
    const nothing = { volumes: [], notes: [], protectedRanges: ExtentSet.empty };
    return { table: 'none', diskSizeBytes: device.sizeBytes, sectorSizeBytes: 512, ...nothing };
  }
}

/** What one PV holds: its VG, its logical volumes and LVM's own structures (disk offsets). */
interface PhysicalVolume {
  readonly vgName: string;
  readonly volumes: Volume[];
  readonly pvFreeMap: FreeMap;
  readonly structures: ExtentSet;
}

/** A PV's logical volumes (disk offsets) and its VG's free extents on it as a trusted free map. */
async function readPhysicalVolume(ctx: RunContext, device: BlockReader, pv: Volume): Promise<PhysicalVolume> {
  const pvReader = sliceReader(device, pv.offsetBytes, pv.sizeBytes);
  let lvm;
  try {
    lvm = await readLvm(pvReader, pv.name);
  } catch (err) {
    if (!isSparsifyError(err, 'BAD_LAYOUT')) throw err;
    // Damaged LVM metadata: nothing on this PV is touched, its label and areas not even by --zero.
    const label = await probeLvmPv(pvReader);
    const structures = label ? lvmStructureRanges(label, pv.sizeBytes).shift(pv.offsetBytes) : ExtentSet.empty;
    return { vgName: '', volumes: [], pvFreeMap: { trusted: false, reason: err.message }, structures };
  }
  for (const note of lvm.notes) ctx.log.warn(note);
  for (const lv of lvm.unhandled) ctx.log.warn(`/dev/${lvm.vgName}/${lv.name}: ${lv.reason}: left as it is`);
  const volumes: Volume[] = lvm.volumes.map((lv) => ({ ...lv, offsetBytes: pv.offsetBytes + lv.offsetBytes }));
  const pvFreeMap: FreeMap = {
    trusted: true,
    free: lvm.freeOnPv,
    unitBytes: lvm.extentSizeBytes || 512,
    counterFreeBytes: lvm.freeOnPv.totalBytes,
    detail: lvm.vgName ? `VG ${lvm.vgName}: free extents` : 'no volume group metadata',
  };
  return { vgName: lvm.vgName, volumes, pvFreeMap, structures: lvm.structures.shift(pv.offsetBytes) };
}

/** Where the volume pass runs: the copy overlay, or the image itself. */
export type PassTarget = EngineTarget;

/** The belt holds at most this many protected bytes of one volume in memory. */
const MAX_SAVED_BYTES = 64 * 1024 * 1024;

/** Runs plans on one disk, each through its engine's session; disposed once after the last. */
export interface VolumePass extends AsyncDisposable {
  run(plan: VolumePlan, steps?: EngineSteps): Promise<VolumeOutcome>;
}

/**
 * The volume pass over one disk. Every plan goes to the engine the planner named, looked up in
 * `engines` (the engine table): the only dispatch. An engine's session is opened at its first
 * volume, so an engine no volume needs costs nothing, and all are disposed with the pass.
 */
export function openVolumePass(ctx: RunContext, target: PassTarget, engines: readonly Engine[] = ENGINES): VolumePass {
  const stack = new AsyncStack((err) => ctx.log.warn(`closing an engine: ${err instanceof Error ? err.message : String(err)}`));
  const sessions = new Map<string, EngineSession>();
  const sessionFor = async (id: string): Promise<EngineSession> => {
    let session = sessions.get(id);
    if (!session) {
      session = stack.use(await engineById(id, engines).open(ctx, target));
      sessions.set(id, session);
    }
    return session;
  };
  return {
    run: async (plan, steps = quietSteps) => {
      if (plan.action === 'keep' || !plan.engine) return keepVolume(ctx, plan, target);
      const session = await sessionFor(plan.engine);
      return withProtectedBytes(ctx, plan, target.device, () => session.run(plan, steps));
    },
    [Symbol.asyncDispose]: () => stack[Symbol.asyncDispose](),
  };
}

function keepVolume(ctx: RunContext, plan: VolumePlan, target: PassTarget): VolumeOutcome {
  const kept = target.inPlace ? 'left alone' : 'copied as is';
  if (plan.warn) ctx.log.warn(`${plan.volume.name}: ${plan.reason}: ${kept}`);
  return { handled: kept, reason: plan.reason };
}

/**
 * The belt around every engine run. The protected bytes inside the volume are left out of every
 * range an engine zeroes or trims; as a belt for any engine (zero-fill cannot be told which
 * blocks to spare), they are also read before the run and written back after it wherever they
 * changed, with a warning. Per volume, because an engine only reaches its own volume.
 */
async function withProtectedBytes(
  ctx: RunContext,
  plan: VolumePlan,
  device: BlockDevice,
  run: () => Promise<VolumeOutcome>,
): Promise<VolumeOutcome> {
  const guarded = plan.protectedRanges;
  if (guarded.totalBytes > MAX_SAVED_BYTES) {
    ctx.log.debug(`${plan.volume.name}: ${guarded.totalBytes} protected bytes: too many to hold for the belt`);
    return run();
  }
  const saved = await saveBytes(device, guarded);
  const outcome = await run();
  const restored = await restoreChangedBytes(device, saved);
  if (!restored.isEmpty) {
    const where = restored.ranges.map((r) => `${r.start}–${r.end - 1}`).join(', ');
    ctx.log.warn(
      `${plan.volume.name}: the ${plan.action} pass changed partition-table or LVM structures inside the volume ` +
        `(bytes ${where}); they were written back`,
    );
  }
  return outcome;
}
