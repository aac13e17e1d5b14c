import { rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { uninterruptible, type RunContext } from '../context.js';
import { applianceVerdict } from '../engines/appliance/availability.js';
import { ENGINES } from '../engines/registry.js';
import type { EngineTarget } from '../engines/engine.js';
import { startAppliance, type PendingAppliance } from '../engines/appliance/prelaunch.js';
import { LAUNCH_PHASE, LAUNCH_STEP } from '../engines/appliance/session.js';
import { SparsifyError, throwIfCancelled } from '../errors.js';
import { makeWorkDir } from '../host/work-dir.js';
import { openNbdClient } from '../nbd/client.js';
import type { InPlaceOptions } from '../options.js';
import { checkImage, readImageInfo, type ImageInfo } from '../qemu/img.js';
import { serveImage } from '../qemu/storage-daemon.js';
import type { RunReport } from '../report/types.js';
import { volumeReports, type VolumeResult } from '../report/volumes.js';
import { AsyncStack } from '../util/async-stack.js';
import { humanBytes } from '../util/size.js';
import { readInPlaceBaseline, verifyInPlace, type InPlaceBaseline } from '../verify/in-place.js';
import { VERSION } from '../version.js';
import { explainDaemonDeath, type WatchedDaemon } from './daemon-death.js';
import type { Job, Steps } from './job.js';
import { isRoot } from './preflight.js';
import { punchFreeQcow2Clusters } from './qcow2-punch.js';
import type { RunHooks } from './run-hooks.js';
import { startRun, warnIfProbedRaw, type RunStart } from './run-setup.js';
import { silentUi, type RunUi } from './ui.js';
import { examineDisk, type Examined, type ExamineHooks } from './volume-pass.js';
import { examineStepsUnder, measureAfter, measureBefore, passVolumes } from './volume-steps.js';

/** Formats whose discarded blocks qemu gives back to the host file. */
const DISCARDING_FORMATS: ReadonlySet<string> = new Set(['raw', 'qcow2']);

/** The steps of in-place mode, in order. */
const STEP = {
  examine: 'Examine disk',
  filesystems: 'Examine filesystems',
  checksum: 'Checksum what the pass must not change',
  pass: 'Give free space back to the host',
  flush: 'Flush',
} as const;

/**
 * In-place mode: `sparsify --in-place DISK`. The image itself is served (holding qemu's write
 * lock) with discards passed down to the host file, each volume's free space is trimmed, and
 * the file's allocated size drops. Ctrl-C stops between volumes: a volume being trimmed is
 * finished first, so every filesystem is consistent when the run ends. `hooks.onReport` gets
 * the report at the end.
 */
export function inPlaceJob(options: InPlaceOptions, ctx: RunContext, ui: RunUi = silentUi, hooks: RunHooks = {}): Job {
  const { examine, filesystems, checksum, pass, flush } = STEP;
  return {
    title: options.input,
    steps: [examine, filesystems, ...(options.verify ? [checksum] : []), pass, flush],
    run: (steps) => runInPlace(steps, options, ctx, ui, hooks),
  };
}

/** The image as served for the pass, and what the host held of it before. */
interface Image {
  readonly info: ImageInfo;
  readonly allocatedBefore: number;
  readonly target: EngineTarget;
}

/** What the pass found and did. */
interface Pass {
  readonly image: Image;
  readonly examined: Examined;
  readonly results: VolumeResult[];
  /** --verify: what the pass must not change, read before it. */
  readonly baseline?: InPlaceBaseline;
}

async function runInPlace(steps: Steps, options: InPlaceOptions, ctx: RunContext, ui: RunUi, hooks: RunHooks): Promise<RunReport> {
  const start = await startRun(ctx, ui, options);
  const { clock, say } = start;
  // The image is being changed: nothing below may be cut half-way by the signal. The signal is
  // checked between volumes instead (virt-sparsify does the same).
  const work: RunContext = uninterruptible(start.run);
  const done = await passImage(steps, start, work, ui, options);
  const { image, baseline } = done;
  const { info } = image;
  const qcow2 = info.format === 'qcow2' ? await clock.time('qcow2 refcounts', () => punchQcow2(work, options.input, say)) : undefined;
  const verify = baseline && (await clock.time('verify', () => verifyInPlace(start.run, baseline, options.input, info.format)));
  const allocatedAfter = await allocatedBytes(options.input);
  say('Sparsify in-place operation completed with no errors');
  const report: RunReport = {
    tool: 'sparsify',
    version: VERSION,
    mode: 'in-place',
    input: { path: options.input, format: info.format, virtualSizeBytes: info.virtualSizeBytes, allocatedBytes: image.allocatedBefore },
    allocatedBytesAfter: allocatedAfter,
    ...(qcow2 ? { notes: [`qcow2: ${qcow2}`] } : {}),
    ...(verify ? { verify } : {}),
    partitionTable: done.examined.layout.table,
    volumes: volumeReports(done.results),
    warnings: start.warnings,
    phases: clock.phases(),
    totalMs: clock.totalMs(),
  };
  await hooks.onReport?.(report);
  return report;
}

/** The steps over the served image; the image is closed when they end, before the qcow2 pass opens the file. */
async function passImage(steps: Steps, start: RunStart, work: RunContext, ui: RunUi, options: InPlaceOptions): Promise<Pass> {
  const { clock, say } = start;
  const signal = start.run.signal;
  await using stack = new AsyncStack((err) => start.run.log.debug(`cleanup: ${String(err)}`));
  const daemons: WatchedDaemon[] = [];
  /** The appliance's launch, started once a probed volume needs it (appliance/prelaunch.ts). */
  let early: Promise<PendingAppliance | undefined> | undefined;
  try {
    const image = await steps.run(STEP.examine, () => clock.time('examine', () => openImage(work, ui, options, stack, daemons)));
    const device = image.target.device;
    const launchEarly = async () => {
      if (!(await applianceVerdict(start.run)).ok) return undefined;
      say(LAUNCH_STEP);
      return stack.use(startAppliance(work, image.target, (fn) => clock.time(LAUNCH_PHASE, fn)));
    };
    const examineHooks: ExamineHooks = { applianceNeeded: () => (early ??= launchEarly()).catch(() => undefined) };
    const { examined, planned } = await steps.run(STEP.filesystems, (view) => {
      say(STEP.filesystems);
      return clock.time('layout', async () => {
        const input = { ...options, noZero: false, root: isRoot(), appliance: () => applianceVerdict(start.run) };
        const examined = await examineDisk(work, device, input, ENGINES, examineStepsUnder(view, STEP.filesystems, start), examineHooks);
        return { examined, planned: await measureBefore(device, examined.plans) };
      });
    });
    const pending = await early;
    const usesAppliance = examined.plans.some((p) => p.engine === 'appliance');
    if (pending && !usesAppliance) await pending[Symbol.asyncDispose]();
    const target: EngineTarget = pending && usesAppliance ? { ...image.target, appliance: pending.appliance } : image.target;
    const baseline = options.verify
      ? await steps.run(STEP.checksum, () => clock.time('verify checksum', () => readInPlaceBaseline(device, examined.plans, signal)))
      : undefined;
    const passed = await passVolumes(steps, STEP.pass, start, work, target, planned);
    const results = await steps.run(STEP.flush, () => {
      throwIfCancelled(signal);
      return clock.time('flush', async () => {
        await device.flush();
        return measureAfter(device, passed);
      });
    });
    return { image, examined, results, ...(baseline ? { baseline } : {}) };
  } catch (err) {
    await early?.catch(() => undefined);
    throw await explainDaemonDeath(err, daemons, 'only free blocks were discarded');
  }
}

async function openImage(ctx: RunContext, ui: RunUi, options: InPlaceOptions, stack: AsyncStack, daemons: WatchedDaemon[]): Promise<Image> {
  ui.message?.('Examine disk');
  const info = await readImageInfo(ctx, options.input, options.format ? { format: options.format } : {});
  warnIfProbedRaw(ctx, info, options.input);
  if (!DISCARDING_FORMATS.has(info.format)) {
    throw new SparsifyError('NO_DISCARD', `discard/trim is not supported on ${info.format} images`, {
      hint: 'use copy mode: sparsify IN OUT (with --convert to keep or change the format)',
    });
  }
  if (info.backingFile) {
    throw new SparsifyError('UNSUPPORTED', `${options.input} has a backing file: refused in place, where only its own clusters could be freed`, {
      hint: 'use copy mode (it flattens the chain, or keeps it with --keep-backing), or commit the overlay into its backing file first (qemu-img commit)',
    });
  }
  await checkImage(ctx, options.input, info.format);
  const allocatedBefore = await allocatedBytes(options.input);
  const workDir = await makeWorkDir(tmpdir());
  stack.defer(() => rm(workDir, { recursive: true, force: true }));
  const served = stack.use(
    await serveImage(ctx, {
      file: options.input,
      format: info.format,
      readOnly: false,
      discard: true,
      detectZeroes: 'unmap',
      dir: workDir,
      onStarted: (p) => daemons.push({ ...p, serves: options.input }),
    }),
  );
  const exported = { socketPath: served.socketPath, exportName: served.exportName };
  const nbd = stack.use(await openNbdClient(exported));
  if (!nbd.info.canTrim || !nbd.info.canWriteZeroes) {
    throw new SparsifyError('NO_DISCARD', `discard/trim is not supported on ${options.input}`, { hint: 'use copy mode: sparsify IN OUT' });
  }
  const onProcess: EngineTarget['onProcess'] = (p) => daemons.push({ ...p, serves: p.tool === 'nbdfuse' ? 'the disk as a FUSE file' : 'the disk to the libguestfs appliance' });
  return { info, allocatedBefore, target: { device: nbd, export: exported, workDir, inPlace: true, onProcess } };
}

/** The refcount pass of a qcow2 image, reported in one line either way. */
async function punchQcow2(ctx: RunContext, file: string, say: (t: string) => void): Promise<string> {
  const workDir = await makeWorkDir(tmpdir());
  try {
    say('Punch out the clusters the qcow2 refcounts say are free');
    const outcome = await punchFreeQcow2Clusters(ctx, file, workDir);
    if (!outcome.ok) {
      const note = `clusters freed in the qcow2 but still allocated in the file were left: ${outcome.reason}`;
      ctx.log.warn(note);
      return note;
    }
    return `the file's free clusters (refcount 0, ${humanBytes(outcome.punchedBytes)}) were discarded: holes where the file had them allocated`;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** Bytes the host has allocated for the file (`du`). */
async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}
