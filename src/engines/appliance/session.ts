/**
 * The appliance engine's session on one disk: one libguestfs appliance, launched at the first
 * volume (its launch is a step of that volume), with the run's writable NBD export as its only
 * drive, discards passed through (copy mode: the overlay, where a trimmed cluster reads back as
 * zero; in place: the image, where it becomes a hole). Each volume is then handled as
 * virt-sparsify does (volume.ts); everything is unmounted and synced after each volume, so every
 * discard has reached the export before the run reads it back. An appliance the run already
 * launched, or started launching, over the same export (target.appliance: --template's, or one
 * started while the disk was examined, prelaunch.ts) is waited for and used instead of a new one.
 */
import type { RunContext } from '../../context.js';
import { SparsifyError } from '../../errors.js';
import type { VolumePlan } from '../../plan/types.js';
import type { EngineSession, EngineSteps, EngineTarget, VolumeOutcome } from '../engine.js';
import { launchAppliance, type Appliance } from './guestfish.js';
import { findAppliance } from './host.js';
import { handleVolume, releaseMounts } from './volume.js';

/** The step that launches the VM, and the phase its time is reported under (the README quotes it). */
export const LAUNCH_STEP = 'Launch the libguestfs appliance';
export const LAUNCH_PHASE = 'appliance launch';
/** The step of the first volume when the run started the launch earlier (its time is the volume's). */
export const WAIT_STEP = 'Wait for the libguestfs appliance';

/** Opens the session; nothing is launched until the first volume. */
export function openApplianceSession(ctx: RunContext, target: EngineTarget): Promise<EngineSession> {
  let launched: Promise<Appliance> | undefined;
  /** btrfs filesystems (by UUID) already trimmed, and through which volume: one fstrim covers all its devices. */
  const trimmedBtrfs = new Map<string, string>();
  // An appliance the run launched already (templating) is used as it is, and stopped by its owner.
  const given = target.appliance;
  const appliance = (steps: EngineSteps): Promise<Appliance> =>
    (launched ??= given ? steps.step(WAIT_STEP, () => given) : steps.step(LAUNCH_STEP, () => launchOver(ctx, target), LAUNCH_PHASE));
  return Promise.resolve({
    run: async (plan: VolumePlan, steps: EngineSteps): Promise<VolumeOutcome> =>
      handleVolume(ctx, await appliance(steps), plan, { inPlace: target.inPlace, steps, trimmedBtrfs }),
    [Symbol.asyncDispose]: async () => {
      const running = await launched?.catch(() => undefined);
      if (!running) return;
      try {
        await releaseMounts(running);
      } finally {
        if (!given) await running[Symbol.asyncDispose]();
      }
    },
  });
}

/** Launches an appliance whose one drive is the target's writable export, discards passed through. */
export async function launchOver(ctx: RunContext, target: EngineTarget): Promise<Appliance> {
  if (!target.export) throw new Error('the appliance engine needs a writable export of the disk');
  const found = await findAppliance();
  if (!found.available) throw new SparsifyError('TOOL_MISSING', found.reason);
  for (const notice of found.host.notices) ctx.log.info(notice);
  const drive = { ...target.export, readOnly: false, discard: true };
  return launchAppliance(ctx, {
    host: found.host,
    drives: [drive],
    workDir: target.workDir,
    ...(target.onProcess ? { onProcess: target.onProcess } : {}),
  });
}
