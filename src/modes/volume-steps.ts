/**
 * The per-volume part of both modes, as steps: what reads as zero before, the volume pass (one
 * sub-step per volume, through the engines the planner chose), what reads as zero after. Each
 * returns one record per volume, so the report is built from `VolumeResult`s (report/volumes.ts).
 */
import type { RunContext } from '../context.js';
import type { BlockDevice } from '../disk/types.js';
import { readZeroExtents } from '../disk/zero-map.js';
import type { EngineSteps, EngineTarget, VolumeOutcome } from '../engines/engine.js';
import { engineById } from '../engines/registry.js';
import { throwIfCancelled } from '../errors.js';
import type { VolumePlan } from '../plan/types.js';
import type { VolumeResult } from '../report/volumes.js';
import type { StepView, Steps } from './job.js';
import type { RunStart } from './run-setup.js';
import { openVolumePass } from './volume-pass.js';

/** A planned volume and what of it read as zero before the pass. */
export type PlannedVolume = Pick<VolumeResult, 'plan' | 'zeroBytesBefore'>;
/** A volume the pass has handled. */
export type PassedVolume = Omit<VolumeResult, 'zeroBytesAfter'>;

/** Bytes of a volume that read as zero, from block status alone. */
async function zeroBytesOf(device: BlockDevice, plan: VolumePlan): Promise<number> {
  return (await readZeroExtents(device, plan.volume.offsetBytes, plan.volume.sizeBytes)).totalBytes;
}

/** Each plan with what of its volume reads as zero before the pass. */
export async function measureBefore(device: BlockDevice, plans: readonly VolumePlan[]): Promise<PlannedVolume[]> {
  const out: PlannedVolume[] = [];
  for (const plan of plans) out.push({ plan, zeroBytesBefore: await zeroBytesOf(device, plan) });
  return out;
}

/** Each handled volume with what of it reads as zero after the pass: the run's volume results. */
export async function measureAfter(device: BlockDevice, passed: readonly PassedVolume[]): Promise<VolumeResult[]> {
  const out: VolumeResult[] = [];
  for (const p of passed) out.push({ ...p, zeroBytesAfter: await zeroBytesOf(device, p.plan) });
  return out;
}

/** The status line virt-sparsify prints before it handles a volume. */
function volumeMessage(plan: VolumePlan, inPlace: boolean): string {
  const own: Partial<Record<string, string>> = { keep: 'Leave alone', zero: 'Zeroing', swap: 'Clearing Linux swap on' };
  const verb = own[plan.action] ?? engineById(plan.action).verbs[inPlace ? 1 : 0];
  return `${verb} ${plan.volume.name}`;
}

/**
 * The volume pass as one step with a sub-step per volume, run in order. The run's signal is
 * checked before each volume, so Ctrl-C stops between volumes (what runs inside a volume decides
 * whether it can be cut); the engines' sessions are closed after the last volume, or the failure.
 */
export async function passVolumes(
  steps: Steps,
  title: string,
  start: RunStart,
  ctx: RunContext,
  target: EngineTarget,
  planned: readonly PlannedVolume[],
): Promise<PassedVolume[]> {
  await using pass = openVolumePass(ctx, target);
  const titleOf = ({ plan }: PlannedVolume) => `${plan.volume.name} (${plan.fs.type})`;
  // Awaited here, not returned: the sessions must close after the last volume, not before the first.
  return await steps.each(title, planned, titleOf, async (p, view): Promise<PassedVolume> => {
    throwIfCancelled(start.run.signal);
    start.say(volumeMessage(p.plan, target.inPlace));
    const engineSteps = stepsUnder(view, titleOf(p), start);
    const outcome: VolumeOutcome = await start.clock.time(`volume ${p.plan.volume.name}`, () => pass.run(p.plan, engineSteps));
    view.retitle(`${titleOf(p)}: ${outcome.handled}`);
    return { ...p, outcome };
  });
}

/**
 * An engine's own steps within one volume (an appliance launch, a mount, fstrim): each shows as
 * the volume's line in the task list and as a status message (--machine-readable prints it), and
 * is timed in the report's phases when it names one.
 */
function stepsUnder(view: StepView, title: string, start: RunStart): EngineSteps {
  return {
    step: (text, fn, phase) => {
      view.retitle(`${title}: ${text}`);
      start.say(text);
      return phase === undefined ? fn() : start.clock.time(phase, fn);
    },
  };
}

/**
 * What the examination runs as its own tasks (deriving a LUKS key): while one runs, the step's
 * line in the task list names it and a line under the step says it (plain output prints it), a
 * status message says it (--machine-readable prints it), and it is timed in the report's phases.
 * The step's title comes back when it ends.
 */
export function examineStepsUnder(view: StepView, title: string, start: RunStart): EngineSteps {
  const inner = stepsUnder(view, title, start);
  return {
    step: async (text, fn, phase) => {
      view.note(text);
      try {
        return await inner.step(text, fn, phase);
      } finally {
        view.retitle(title);
      }
    },
  };
}
