import { rm } from 'node:fs/promises';
import { SparsifyError } from '../errors.js';
import type { RunContext } from '../context.js';
import { applianceVerdict } from '../engines/appliance/availability.js';
import type { EngineTarget } from '../engines/engine.js';
import { startAppliance, type PendingAppliance } from '../engines/appliance/prelaunch.js';
import { LAUNCH_PHASE, LAUNCH_STEP } from '../engines/appliance/session.js';
import { ENGINES } from '../engines/registry.js';
import { assertInputUnchanged } from '../host/input-guard.js';
import type { CopyOptions } from '../options.js';
import { ProgressMeter } from '../progress/meter.js';
import type { RunReport, TemplateReport, VerifyReport } from '../report/types.js';
import type { ShrinkReport } from '../shrink/run.js';
import { volumeReports, type VolumeResult } from '../report/volumes.js';
import { AsyncStack } from '../util/async-stack.js';
import { verifyCopiedOutput } from '../verify/output.js';
import { VERSION } from '../version.js';
import { copyToOutput, openOverlay, openSource, writtenPath, type Copied, type CopyEnv, type Overlay, type Source } from './copy-disk.js';
import type { ChainHandling } from './backing-chain.js';
import { explainDaemonDeath, type WatchedDaemon } from './daemon-death.js';
import type { Job, Steps } from './job.js';
import { commitOutput, resolveOutputTarget } from './output-target.js';
import type { PhaseClock } from './phase-clock.js';
import { isRoot } from './preflight.js';
import type { RunHooks } from './run-hooks.js';
import { startRun, type RunStart } from './run-setup.js';
import { checkTmpSpace, estimateOverlayBytes } from './tmp-check.js';
import { silentUi, type RunUi } from './ui.js';
import { SEAL_TITLE, sealOverlay, type Sealed } from './template-step.js';
import { SHRINK_TITLE, shrinkOverlay, type Shrunk } from './shrink-step.js';
import { examineDisk, type Examined, type ExamineHooks } from './volume-pass.js';
import { examineStepsUnder, measureAfter, measureBefore, passVolumes } from './volume-steps.js';

/** The steps of copy mode, in order. */
const STEP = {
  examine: 'Examine source disk',
  filesystems: 'Examine filesystems',
  overlay: 'Create overlay file to protect source disk',
  seal: SEAL_TITLE,
  shrink: SHRINK_TITLE,
  pass: 'Free space in each filesystem',
  copy: 'Copy to destination and make sparse',
  verify: 'Verify the output',
} as const;

/**
 * Copy mode: `sparsify IN OUT`. The input is never written. It is served read-only and examined;
 * volumes whose free space is known without writing (trusted free maps, --zero, swap) only add
 * ranges to the copier's skip set. Only when a volume needs the mount engine is a qcow2 overlay
 * (backing = IN) created in the temporary place, served over NBD and as a FUSE file, and
 * trimmed through mounts. Then the block copier writes OUT, skipping what reads as zero. The
 * report goes to `hooks.onReport` before the output is renamed into place.
 */
export function copyJob(options: CopyOptions, ctx: RunContext, ui: RunUi = silentUi, hooks: RunHooks = {}): Job {
  const { examine, filesystems, overlay, seal, shrink, pass, copy, verify } = STEP;
  const rest = [pass, copy, ...(options.verify ? [verify] : [])];
  const shrinking = options.shrink ? [shrink] : [];
  // --template and --shrink: the overlay first (always), the guest sealed and the disk shrunk on it, then its filesystems examined.
  const steps = options.template?.dryRun
    ? [examine, overlay, seal]
    : options.template
      ? [examine, overlay, seal, ...shrinking, filesystems, ...rest]
      : options.shrink
        ? [examine, overlay, shrink, filesystems, ...rest]
        : [examine, filesystems, overlay, ...rest];
  return {
    title: options.template?.dryRun ? `${options.input} (dry run)` : `${options.input} → ${options.output}`,
    steps,
    run: (steps) => runCopy(steps, options, ctx, ui, hooks),
  };
}

/** What the steps found and made, for the report. */
interface Copy {
  readonly source: Source;
  readonly examined: Examined;
  readonly results: VolumeResult[];
  readonly copied: Copied;
  readonly verify?: VerifyReport;
  readonly template?: TemplateReport;
  readonly shrink?: ShrinkReport;
}

async function runCopy(steps: Steps, options: CopyOptions, ctx: RunContext, ui: RunUi, hooks: RunHooks): Promise<RunReport> {
  const start = await startRun(ctx, ui, options);
  const { run, clock, say } = start;
  // A dry run writes no output: there is nothing to check or to name.
  const target = options.template?.dryRun ? undefined : await resolveOutputTarget(options);

  await using stack = new AsyncStack((err) => run.log.debug(`cleanup: ${String(err)}`));
  let committed = false;
  stack.defer(async () => {
    if (!committed && target?.kind === 'file') await rm(target.partialPath, { force: true });
  });
  const daemons: WatchedDaemon[] = [];
  const env: CopyEnv = { ctx: run, ui, options, stack, daemons };
  let done: Copy;
  /** The overlay and the appliance's launch, started while the disk is examined. */
  let early: Promise<EarlyLaunch | undefined> | undefined;
  try {
    const source = await steps.run(STEP.examine, () => clock.time('examine', () => openSource(env, target)));
    let sealed: { overlay: Overlay; seal: Sealed } | undefined;
    /** The overlay --shrink made when --template did not. */
    let prepared: Overlay | undefined;
    if (options.template) {
      const overlay = await runOverlayStep(steps, env, start, source, undefined);
      const template = options.template;
      const seal = await steps.run(STEP.seal, (view) => {
        say(STEP.seal);
        return sealOverlay(env, start, source, overlay, template, view);
      });
      if (template.dryRun) {
        await seal.release();
        return await finishDryRun(options, start, source, seal.report, hooks);
      }
      sealed = { overlay, seal };
    }
    if (!target) throw new SparsifyError('INTERNAL', 'copy mode without an output outside a dry run');
    let shrunk: Shrunk | undefined;
    if (options.shrink) {
      const shrink = options.shrink;
      const shrinkOn = sealed?.overlay ?? (await runOverlayStep(steps, env, start, source, undefined));
      shrunk = await steps.run(STEP.shrink, (view) => {
        say(STEP.shrink);
        return shrinkOverlay(env, start, source, shrinkOn, shrink, view, sealed?.seal.appliance);
      });
      if (!sealed) prepared = shrinkOn;
    }
    // After sealing or shrinking, the overlay holds the disk to examine: the removed files' blocks are free in its maps.
    const examinedDevice = shrunk?.device ?? sealed?.overlay.device ?? source.device;
    // Without --template or --shrink, the appliance's launch starts once a probed volume needs it.
    const examineHooks: ExamineHooks = sealed || shrunk ? {} : { applianceNeeded: () => (early ??= launchEarly(env, start, source)) };
    const { examined, planned } = await steps.run(STEP.filesystems, (view) => {
      say(STEP.filesystems);
      return clock.time('layout', async () => {
        const input = { ...options, root: isRoot(), appliance: () => applianceVerdict(run) };
        const examined = await examineDisk(run, examinedDevice, input, ENGINES, examineStepsUnder(view, STEP.filesystems, start), examineHooks);
        const planned = await measureBefore(examinedDevice, examined.plans);
        view.retitle(`${STEP.filesystems}: ${describeVolumes(examined)}`);
        return { examined, planned };
      });
    });
    const launched = await early;
    const overlay = sealed ? sealed.overlay : prepared ?? (await maybeOverlay(steps, env, start, source, examined, launched?.overlay));
    const usesAppliance = examined.plans.some((p) => p.engine === 'appliance');
    // The seal's appliance serves the pass too when a volume is planned for it; else it stops now.
    const reused = sealed && usesAppliance ? Promise.resolve(sealed.seal.appliance) : launched && usesAppliance ? launched.pending.appliance : undefined;
    if (sealed && !reused) await sealed.seal.release();
    if (launched && !reused) await launched.pending[Symbol.asyncDispose]();
    const engineTarget: EngineTarget = { ...passTarget(env, source, shrunk?.device ?? overlay?.device ?? source.device, overlay), ...(reused ? { appliance: reused } : {}) };
    const passed = await passVolumes(steps, STEP.pass, start, run, engineTarget, planned);
    await sealed?.seal.release();
    const { results, copied } = await steps.run(STEP.copy, (view) => {
      say(STEP.copy);
      return clock.time('copy', async () => {
        const results = await measureAfter(engineTarget.device, passed);
        const meter = new ProgressMeter();
        const onProgress = (doneBytes: number, totalBytes: number) => {
          const progress = meter.update(doneBytes, totalBytes);
          view.progress(progress);
          ui.progress?.(progress);
        };
        const copied = await copyToOutput(env, shrunk?.source ?? source, engineTarget.device, examined.plans, target, onProgress, overlay);
        return { results, copied };
      });
    });
    const verify = options.verify
      ? await steps.run(STEP.verify, () => {
          say(STEP.verify);
          const output = { path: writtenPath(target), format: source.outputFormat, source: engineTarget.device, zeroed: copied.zeroed, workDir: source.workDir };
          return clock.time('verify', () => verifyCopiedOutput(run, output));
        })
      : undefined;
    done = { source, examined, results, copied, ...(verify ? { verify } : {}), ...(sealed ? { template: sealed.seal.report } : {}), ...(shrunk ? { shrink: shrunk.report } : {}) };
  } catch (err) {
    // What the early launch opened joins the stack before the stack is released.
    await early?.catch(() => undefined);
    throw await explainDaemonDeath(err, daemons);
  }
  await assertInputUnchanged(start.input);
  const report = copyReport(options, done, start.warnings, clock);
  await hooks.onReport?.(report);
  if (target) await commitOutput(target);
  committed = true;
  say('Sparsify operation completed with no errors.');
  return report;
}

/** The overlay step: run when some volume's engine writes, else skipped with the reason. */
async function maybeOverlay(steps: Steps, env: CopyEnv, start: RunStart, source: Source, examined: Examined, made?: Overlay): Promise<Overlay | undefined> {
  if (!examined.needs.overlay && !made) {
    steps.skip(STEP.overlay, 'no volume needs a mount: the input is read as it is');
    return undefined;
  }
  return runOverlayStep(steps, env, start, source, examined, made);
}

/**
 * Creates and serves the overlay (or takes the one the early launch made: `made`). The free
 * space it may need is checked from the volumes that will write it; --template makes it before
 * any volume is known, and its operations write little (the pass that follows mostly reads
 * maps), so it is not estimated then. An overlay made early has taken no space yet: the
 * appliance writes it only during the pass, after this check.
 */
function runOverlayStep(steps: Steps, env: CopyEnv, start: RunStart, source: Source, examined: Examined | undefined, made?: Overlay): Promise<Overlay> {
  const { ctx, ui, options } = env;
  const { clock, say } = start;
  return steps.run(STEP.overlay, () => {
    say(STEP.overlay);
    return clock.time('overlay', async () => {
      if (options.tmp.kind === 'dir' && examined) {
        const bytes = estimateOverlayBytes(source.info.virtualSizeBytes, examined.needs.overlayVolumes);
        await checkTmpSpace(ctx, ui, options.tmp.path, bytes, options.checkTmpdir);
      }
      return made ?? openOverlay(env, source);
    });
  });
}

/** The overlay made, and the appliance launch started, while the disk is examined. */
interface EarlyLaunch {
  readonly overlay: Overlay;
  readonly pending: PendingAppliance;
}

/**
 * Makes the overlay and starts the appliance's launch over it (appliance/prelaunch.ts), both on
 * the run's stack (the launch is stopped before the overlay's server); nothing when libguestfs
 * cannot run here (the planner then plans without it). The launch is said (a status line, as
 * when the pass launches it) and timed as LAUNCH_PHASE.
 */
function launchEarly(env: CopyEnv, start: RunStart, source: Source): Promise<EarlyLaunch | undefined> {
  const launching = (async () => {
    if (!(await applianceVerdict(start.run)).ok) return undefined;
    const overlay = await openOverlay(env, source);
    start.say(LAUNCH_STEP);
    const time = <T>(fn: () => Promise<T>) => start.clock.time(LAUNCH_PHASE, fn);
    const pending = env.stack.use(startAppliance(start.run, passTarget(env, source, overlay.device, overlay), time));
    return { overlay, pending };
  })();
  launching.catch(() => undefined);
  return launching;
}

/** Where the pass works: `device`, and the overlay's export for the engines that write. */
function passTarget(env: CopyEnv, source: Source, device: EngineTarget['device'], overlay: Overlay | undefined): EngineTarget {
  return {
    device,
    ...(overlay ? { export: overlay.export, overlayDir: overlay.overlayDir } : {}),
    workDir: source.workDir,
    inPlace: false,
    onProcess: (p) => env.daemons.push({ ...p, serves: p.tool === 'nbdfuse' ? 'the disk as a FUSE file' : 'the disk to the libguestfs appliance' }),
  };
}

/** The end of a dry run: the input unchanged, the report given (no output, no filesystem examined). */
async function finishDryRun(options: CopyOptions, start: RunStart, source: Source, template: TemplateReport, hooks: RunHooks): Promise<RunReport> {
  await assertInputUnchanged(start.input);
  const { info } = source;
  const report: RunReport = {
    tool: 'sparsify',
    version: VERSION,
    mode: 'copy',
    input: { path: options.input, format: info.format, virtualSizeBytes: info.virtualSizeBytes, allocatedBytes: info.actualSizeBytes },
    volumes: [],
    warnings: start.warnings,
    template,
    phases: start.clock.phases(),
    totalMs: start.clock.totalMs(),
  };
  await hooks.onReport?.(report);
  start.say('Dry run completed: nothing was written.');
  return report;
}

function describeVolumes(examined: Examined): string {
  const n = examined.plans.length;
  return `${examined.layout.table === 'none' ? 'no partition table' : examined.layout.table.toUpperCase()}, ${n} volume${n === 1 ? '' : 's'}`;
}

function chainReport(chain: ChainHandling): Pick<RunReport, 'chain'> {
  if (chain.kind === 'none') return {};
  return { chain: { handled: chain.kind, base: chain.kind === 'kept' ? chain.name : chain.base } };
}

function copyReport(options: CopyOptions, done: Copy, warnings: string[], clock: PhaseClock): RunReport {
  const { info, outputFormat } = done.source;
  return {
    tool: 'sparsify',
    version: VERSION,
    mode: 'copy',
    input: { path: options.input, format: info.format, virtualSizeBytes: info.virtualSizeBytes, allocatedBytes: info.actualSizeBytes },
    output: { path: options.output, format: outputFormat, compressed: done.source.output.compress, allocatedBytes: done.copied.allocatedBytes },
    ...chainReport(done.source.chain),
    partitionTable: done.examined.layout.table,
    volumes: volumeReports(done.results),
    warnings,
    copy: done.copied.copy,
    ...(done.verify ? { verify: done.verify } : {}),
    ...(done.template ? { template: done.template } : {}),
    ...(done.shrink ? { shrink: done.shrink } : {}),
    phases: clock.phases(),
    totalMs: clock.totalMs(),
  };
}
