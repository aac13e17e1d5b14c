/**
 * The planner: the one place that decides, per volume, which free map to read, the action, the
 * engine and the reason the report shows. Engines only answer whether they can take a volume
 * (Engine.accepts); the order of preference and the user's choices (--ignore, --zero,
 * --no-zero, --engine) are decided here.
 */
import { ExtentSet } from '../disk/extent-set.js';
import type { Engine, HostFacts } from '../engines/engine.js';
import { ENGINES, ZEROING_ENGINE, type EngineId } from '../engines/registry.js';
import type { Volume } from '../layout/types.js';
import { hibernationReason, untrustedMapReason, type PlanInput, type ProbedVolume, type VolumePlan } from './types.js';

export type { Action, PlanInput, ProbedVolume, VolumePlan } from './types.js';

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
 * Whether the free map of this volume is worth reading: the map engine may take it (not
 * --engine mount, not --no-zero), the user did not already decide (--ignore, --zero), and the
 * probe did not find it dirty or hibernated (its map is not the truth then).
 * `ignore` includes the volumes of an ignored volume group.
 */
export function shouldReadFreeMap(probed: ProbedVolume, input: PlanInput, ignore: readonly string[] = input.ignore): boolean {
  const name = probed.volume.name;
  if (probed.freeMap || input.noZero || ignore.includes(name) || input.zero.includes(name)) return false;
  if (probed.fs.dirty || probed.fs.hibernated) return false;
  return input.engine === 'auto' || input.engine === ZEROING_ENGINE;
}

function decide(probed: ProbedVolume, input: PlanInput, engines: readonly Engine[]): Decision {
  const { volume, fs } = probed;
  if (input.ignore.includes(volume.name)) return keep('ignored (--ignore)');
  if (input.zero.includes(volume.name)) return { action: 'zero', engine: ZEROING_ENGINE, reason: 'zeroed as asked (--zero)' };
  if (input.noZero) return keep('no filesystem pass (--no-zero)');
  if (fs.hibernated) return keep(hibernationReason(fs));
  const host: HostFacts = { root: input.root };
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
  let refusal: string | undefined;
  for (const engine of engines) {
    if (engine === mapper) continue;
    const verdict = engine.accepts(probed, host);
    if (!allowed(engine)) {
      if (verdict.usable || verdict.blame === 'host') refusal ??= `${fs.type}: no trusted map, and --engine ${input.engine} does not ${engine.does}`;
      else refusal ??= verdict.reason;
      continue;
    }
    if (verdict.usable) return { action: engine.id as EngineId, engine: engine.id as EngineId, reason: verdict.reason };
    refusal ??= verdict.reason;
  }
  return keep(untrusted ?? refusal ?? `${fs.type}: not handled`);
}

function keep(reason: string): Decision {
  return { action: 'keep', reason };
}

/** Names given to --ignore/--zero that match no volume (the CLI warns about them). */
export function unmatchedNames(names: readonly string[], volumes: readonly Volume[]): string[] {
  const known = new Set(volumes.map((v) => v.name));
  return names.filter((n) => !known.has(n));
}
