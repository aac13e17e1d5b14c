/** A volume an engine was given but could not free: left as it is, with virt-sparsify's warning. */
import type { RunContext } from '../context.js';
import type { VolumePlan } from '../plan/types.js';
import type { VolumeOutcome } from './engine.js';

/** Warns (in place: virt-sparsify's fstrim warning, with the reason) and reports the volume as kept. */
export function keptVolume(ctx: RunContext, plan: VolumePlan, inPlace: boolean, why: string): VolumeOutcome {
  const name = plan.volume.name;
  const handled = inPlace ? 'left alone' : 'copied as is';
  ctx.log.warn(
    inPlace
      ? `fstrim operation is not supported on ${name} (${plan.fs.type}: ${why}).  ` +
          `Suppress this warning using '--ignore ${name}', or use copying mode instead.`
      : `${name}: ${why}: ${handled}`,
  );
  return { handled, reason: why };
}
