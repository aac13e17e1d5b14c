import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import type { ListrTask } from 'listr2';
import type { RunContext } from '../context.js';
import { SparsifyError, throwIfCancelled } from '../errors.js';
import type { VolumePlan } from '../plan/plan-volumes.js';
import type { Options } from '../options.js';
import type { ImageInfo } from '../qemu/img.js';
import type { WatchedDaemon } from './daemon-death.js';
import { PhaseClock } from './phase-clock.js';
import { BASE_TOOLS, isRoot, preflight } from './preflight.js';
import type { RunUi } from './ui.js';
import type { BlockDevice } from '../disk/types.js';
import type { EngineTarget } from '../engines/engine.js';
import { engineById } from '../engines/registry.js';
import { openVolumePass, type Examined, type VolumeOutcome } from './volume-pass.js';
import { removeDebris, type DebrisPlaces } from '../host/debris.js';
import { snapshotInput, type InputSnapshot } from '../host/input-guard.js';
import { LAUNCHER } from '../util/run.js';

/** What every mode starts with: a context whose warnings are collected for the report, and a clock. */
export interface RunStart {
  readonly run: RunContext;
  readonly warnings: string[];
  readonly clock: PhaseClock;
  readonly say: (text: string) => void;
  /** The input as it was when the run started (host/input-guard.ts). */
  readonly input: InputSnapshot;
}

/**
 * Checks the engine choice and the programs every run needs (those of the engines come after
 * planning, from the engines chosen: volume-pass.ts examineDisk), wraps the logger so that warnings reach the report,
 * removes what killed runs left (with a warning each), and records the input's stat.
 */
export async function startRun(ctx: RunContext, ui: RunUi, options: Options): Promise<RunStart> {
  if (options.engine === 'mount' && !isRoot()) {
    throw new SparsifyError('USAGE', '--engine mount needs root', { hint: 'run as root, or use --engine auto' });
  }
  await preflight([...BASE_TOOLS, LAUNCHER]);
  const warnings: string[] = [];
  const log = { ...ctx.log, warn: (m: string) => (warnings.push(m), ctx.log.warn(m)) };
  const run = { signal: ctx.signal, log };
  await removeDebris(run, debrisPlaces(options));
  return { run, warnings, clock: new PhaseClock(), say: (t) => ui.message?.(t), input: await snapshotInput(options.input) };
}

/** Where this run's own work directories and partial output go: where a killed run's would be. */
function debrisPlaces(options: Options): DebrisPlaces {
  if (options.mode === 'in-place') return { tmpDirs: [tmpdir(), '/tmp'] };
  const tmpDirs = [tmpdir(), '/tmp', ...(options.tmp.kind === 'dir' ? [options.tmp.path] : [])];
  return { tmpDirs, outputDir: dirname(options.output) };
}

/** qemu's warning when it had to guess raw, in one line. */
export function warnIfProbedRaw(ctx: RunContext, info: ImageInfo, path: string): void {
  if (info.probedRaw) {
    ctx.log.warn(`image format was not specified for '${path}' and probing guessed raw; add --format raw to say so`);
  }
}

/** The status line virt-sparsify prints before it handles a volume. */
function volumeMessage(plan: VolumePlan, inPlace: boolean): string {
  const own: Partial<Record<string, string>> = { keep: 'Leave alone', zero: 'Zeroing', swap: 'Clearing Linux swap on' };
  const verb = own[plan.action] ?? engineById(plan.action).verbs[inPlace ? 1 : 0];
  return `${verb} ${plan.volume.name}`;
}

/**
 * One listr2 task per volume, run in order; the run's signal is checked before each volume, so
 * Ctrl-C stops between volumes (what runs inside a volume decides whether it can be cut).
 */
export function volumeTasks<Ctx>(
  start: RunStart,
  plans: readonly VolumePlan[],
  inPlace: boolean,
  runOne: (plan: VolumePlan) => Promise<VolumeOutcome>,
  outcomes: VolumeOutcome[],
): ListrTask<Ctx>[] {
  return plans.map((plan, i) => ({
    title: `${plan.volume.name} (${plan.fs.type})`,
    task: async (_ctx, task) => {
      throwIfCancelled(start.run.signal);
      start.say(volumeMessage(plan, inPlace));
      const outcome = await start.clock.time(`volume ${plan.volume.name}`, () => runOne(plan));
      outcomes[i] = outcome;
      task.title = `${plan.volume.name} (${plan.fs.type}): ${outcome.handled}`;
    },
  }));
}

/** What the volume pass needs from a mode's state, and what it leaves there for the report. */
export interface PassState {
  device?: BlockDevice;
  /** The writable NBD export of the disk (the overlay, or the image in place), for engines that need one. */
  export?: EngineTarget['export'];
  workDir?: string;
  /** The directory of the copy's overlay. */
  overlayDir?: string;
  /** The processes serving the disk (input, overlay, FUSE file), to explain a connection that broke. */
  daemons: WatchedDaemon[];
  examined?: Examined;
  outcomes: VolumeOutcome[];
  /** Per volume, bytes that read as zero before and after the pass (block status only). */
  zeroBefore: number[];
  zeroAfter: number[];
}

/** The listr2 task that runs the plan of every volume, in copy mode or in place; engines are closed after the last. */
export function volumePassTask<Ctx extends PassState>(title: string, start: RunStart, state: Ctx, ctx: RunContext, inPlace: boolean): ListrTask<Ctx> {
  return {
    title,
    task: async (_, task) => {
      const target: EngineTarget = {
        device: state.device!,
        ...(state.export ? { export: state.export } : {}),
        workDir: state.workDir!,
        inPlace,
        ...(state.overlayDir !== undefined ? { overlayDir: state.overlayDir } : {}),
        onProcess: (p) => state.daemons.push({ ...p, serves: 'the disk as a FUSE file' }),
      };
      await using pass = openVolumePass(ctx, target);
      const list = volumeTasks<Ctx>(start, state.examined!.plans, inPlace, (plan) => pass.run(plan), state.outcomes);
      await task.newListr(list, { concurrent: false, exitOnError: true }).run();
    },
  };
}
