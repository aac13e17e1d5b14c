/**
 * The planner: the one place that decides, per volume, which free map to read, the action, the
 * engine and the reason the report shows. Engines only answer whether they can take a volume
 * (Engine.accepts); the order of preference and the user's choices (--ignore, --zero,
 * --no-zero, --engine) are decided here.
 */
import { ExtentSet } from '../disk/extent-set.js';
import type { Engine, HostFacts } from '../engines/engine.js';
import { canMap } from '../engines/map/free-map.js';
import { APPLIANCE_ENGINE, ENGINES, HOST_KERNEL_ENGINE, ZEROING_ENGINE, type EngineId } from '../engines/registry.js';
import { SparsifyError } from '../errors.js';
import type { Volume } from '../layout/types.js';
import { hibernationReason, untrustedMapReason, type LazyPlanInput, type PlanInput, type ProbedVolume, type VolumePlan } from './types.js';

export type { Action, LazyPlanInput, PlanInput, ProbedVolume, VolumePlan } from './types.js';

type Decision = Pick<VolumePlan, 'action' | 'reason' | 'freeMap' | 'engine'>;

/**
 * Decides, for each probed volume, the action and the reason the report will show; each plan
 * carries the part of `protectedRanges` (disk offsets) that lies inside its volume.
 */
export function planVolumes(
  volumes: readonly ProbedVolume[],
  input: PlanInput,
  protectedRanges: ExtentSet = ExtentSet.empty,
  engines: readonly Engine[] = ENGINES,
): VolumePlan[] {
  return volumes.map((probed) => {
    const { volume, fs } = probed;
    const decision = decide(probed, input, engines);
    const chosen = input.ignore.includes(volume.name) || input.noZero;
    const inside = protectedRanges.intersect(ExtentSet.of(volume.offsetBytes, volume.sizeBytes));
    return { volume, fs, ...decision, warn: decision.action === 'keep' && !chosen, protectedRanges: inside };
  });
}

/**
 * Plans with the appliance assumed available, and asks the host (which may take a while) only
 * when some volume would go to it; then plans again with the answer. When no volume takes the
 * appliance its availability changes no plan: an engine checks the volume before the host.
 * `--engine appliance` on a host without libguestfs is an error naming what to install.
 */
export async function planVolumesAskingHost(
  volumes: readonly ProbedVolume[],
  input: LazyPlanInput,
  protectedRanges: ExtentSet = ExtentSet.empty,
  engines: readonly Engine[] = ENGINES,
): Promise<VolumePlan[]> {
  const assumed = planVolumes(volumes, { ...input, appliance: { ok: true } }, protectedRanges, engines);
  if (!assumed.some((p) => p.engine === APPLIANCE_ENGINE)) return assumed;
  const appliance = await input.appliance();
  if (appliance.ok) return assumed;
  if (input.engine === APPLIANCE_ENGINE) {
    throw new SparsifyError('TOOL_MISSING', `--engine appliance: ${appliance.reason}`, { hint: 'or use --engine auto' });
  }
  return planVolumes(volumes, { ...input, appliance }, protectedRanges, engines);
}

/**
 * The one-line notice a run prints when `--engine auto` mounts guest filesystems in the host's
 * kernel (root, no appliance): a crafted filesystem attacks the kernel that mounts it.
 */
export function hostKernelNotice(plans: readonly VolumePlan[], input: Pick<PlanInput, 'engine'>): string | undefined {
  const mounted = plans.filter((p) => p.engine === HOST_KERNEL_ENGINE).map((p) => p.volume.name);
  if (input.engine !== 'auto' || mounted.length === 0) return undefined;
  return `no libguestfs appliance: guest data of ${mounted.join(', ')} is mounted in the host kernel (install libguestfs-tools to keep it in a VM)`;
}

/**
 * Whether the free map of this volume is worth reading: the map engine may take it (not
 * --engine mount, not --no-zero), the user did not already decide (--ignore, --zero), and the
 * probe did not find it dirty or hibernated (its map is not the truth then).
 * `ignore` includes the volumes of an ignored volume group.
 */
export function shouldReadFreeMap(probed: ProbedVolume, input: Omit<PlanInput, 'appliance'>, ignore: readonly string[] = input.ignore): boolean {
  const name = probed.volume.name;
  if (probed.freeMap || input.noZero || ignore.includes(name) || input.zero.includes(name)) return false;
  if (probed.fs.dirty || probed.fs.hibernated) return false;
  return input.engine === 'auto' || input.engine === ZEROING_ENGINE;
}

/**
 * The engine this volume's plan will name, when that is known as soon as it is probed: its free
 * map will not be read (dirty, hibernated, --ignore, --zero, --no-zero, another --engine) or no
 * reader knows its type (btrfs). The plan is the one planVolumes makes, with the appliance
 * assumed available (the caller asks the host before acting on it). Undefined when the map
 * still decides. Lets a mode start a slow engine (the appliance's launch) before the rest of
 * the disk is examined.
 */
export function engineBeforeMap(
  probed: ProbedVolume,
  input: Omit<PlanInput, 'appliance'>,
  ignore: readonly string[] = input.ignore,
  engines: readonly Engine[] = ENGINES,
): EngineId | undefined {
  if (shouldReadFreeMap(probed, input, ignore) && canMap(probed.fs.type)) return undefined;
  return planVolumes([probed], { ...input, ignore, appliance: { ok: true } }, ExtentSet.empty, engines)[0]?.engine;
}

function decide(probed: ProbedVolume, input: PlanInput, engines: readonly Engine[]): Decision {
  const { volume, fs } = probed;
  if (input.ignore.includes(volume.name)) return keep('ignored (--ignore)');
  if (input.zero.includes(volume.name)) return { action: 'zero', engine: ZEROING_ENGINE, reason: 'zeroed as asked (--zero)' };
  if (input.noZero) return keep('no filesystem pass (--no-zero)');
  if (fs.hibernated) return keep(hibernationReason(fs));
  const host: HostFacts = { root: input.root, appliance: input.appliance };
  const allowed = (e: Engine) => input.engine === 'auto' || e.id === input.engine || (e.id === ZEROING_ENGINE && fs.type === 'lvm-pv');
  // The map engine first: it needs no root and changes nothing but free space. A PV's free
  // extents are known from LVM's metadata alone, whatever the engine.
  const mapper = engines.find((e) => e.id === ZEROING_ENGINE);
  const mapped = mapper && allowed(mapper) ? mapper.accepts(probed, host) : undefined;
  if (mapped?.usable && probed.freeMap?.trusted && !fs.dirty) return { action: 'map', engine: ZEROING_ENGINE, reason: mapped.reason, freeMap: probed.freeMap };
  const untrusted = untrustedMapReason(probed);
  if (fs.type === 'swap') {
    // A swap header the map reader refused (old format, odd version) is left as it is.
    return untrusted ? keep(untrusted) : { action: 'swap', engine: ZEROING_ENGINE, reason: 'swap: header kept, the rest zeroed' };
  }
  // Why not: an engine the user allowed says so first; else what the --engine choice excluded.
  let refusal: string | undefined;
  let excluded: string | undefined;
  for (const engine of engines) {
    if (engine === mapper) continue;
    const verdict = engine.accepts(probed, host);
    if (!allowed(engine)) {
      if (verdict.usable || verdict.blame === 'host') excluded ??= `${fs.type}: no trusted map, and --engine ${input.engine} does not ${engine.does}`;
      else excluded ??= verdict.reason;
      continue;
    }
    if (verdict.usable) return { action: engine.id as EngineId, engine: engine.id as EngineId, reason: verdict.reason };
    refusal ??= verdict.reason;
  }
  return keep(untrusted ?? refusal ?? excluded ?? `${fs.type}: not handled`);
}

function keep(reason: string): Decision {
  return { action: 'keep', reason };
}

/** Names given to --ignore/--zero that match no volume (the CLI warns about them). */
export function unmatchedNames(names: readonly string[], volumes: readonly Volume[]): string[] {
  const known = new Set(volumes.map((v) => v.name));
  return names.filter((n) => !known.has(n));
}
