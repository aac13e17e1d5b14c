import { rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ListrTask } from 'listr2';
import type { RunContext } from '../context.js';
import { copyBlocks } from '../copy/copier.js';
import { openCopySource } from '../copy/raw-file-source.js';
import { ExtentSet } from '../disk/extent-set.js';
import { SparsifyError, isSparsifyError } from '../errors.js';
import { assertInputUnchanged } from '../host/input-guard.js';
import { makeWorkDir } from '../host/work-dir.js';
import { openNbdClient } from '../nbd/client.js';
import { OUTPUT_FORMATS, type CopyOptions, type OutputFormat } from '../options.js';
import { checkImage, createImage, readImageInfo, type ImageInfo } from '../qemu/img.js';
import { serveImage } from '../qemu/storage-daemon.js';
import type { CopySummary, RunReport, VerifyReport, VolumeReport } from '../report/types.js';
import { AsyncStack } from '../util/async-stack.js';
import { PathError, pathError, renamePathError } from '../util/errno.js';
import { verifyCopiedOutput } from '../verify/output.js';
import { VERSION } from '../version.js';
import { explainDaemonDeath } from './daemon-death.js';
import { openOutputImage } from './output-image.js';
import { checkOutputFits, commitOutput, resolveOutputTarget, type OutputTarget } from './output-target.js';
import { isRoot } from './preflight.js';
import type { PhaseClock } from './phase-clock.js';
import type { RunHooks } from './run-hooks.js';
import { startRun, volumePassTask, warnIfProbedRaw, type PassState } from './run-setup.js';
import { checkTmpSpace, estimateOverlayBytes } from './tmp-check.js';
import { progressBar, runTasks, type RunUi } from './ui.js';
import { examineDisk, volumeReports, zeroBytesPerVolume, zeroingRanges, type Examined } from './volume-pass.js';

/** State shared by the copy tasks. */
interface CopyState extends PassState {
  info?: ImageInfo;
  outputFormat?: OutputFormat;
  copy?: CopySummary;
  outputAllocatedBytes?: number;
  /** The copier's skip set: what --verify expects to read as zero. */
  zeroed?: ExtentSet;
  verify?: VerifyReport;
}

/**
 * Copy mode: `sparsify IN OUT`. The input is never written. It is served read-only and examined;
 * volumes whose free space is known without writing (trusted free maps, --zero, swap) only add
 * ranges to the copier's skip set. Only when a volume needs the mount engine is a qcow2 overlay
 * (backing = IN) created in the temporary place, served over NBD and as a FUSE file, and
 * trimmed through mounts. Then the block copier writes OUT, skipping what reads as zero. The
 * report goes to `hooks.onReport` before the output is renamed into place.
 */
export async function sparsifyCopy(options: CopyOptions, ctx: RunContext, ui: RunUi, hooks: RunHooks = {}): Promise<RunReport> {
  const start = await startRun(ctx, ui, options);
  const { run, warnings, clock, say } = start;
  const log = run.log;
  const root = isRoot();
  const target = await resolveOutputTarget(options);

  await using stack = new AsyncStack((err) => log.debug(`cleanup: ${String(err)}`));
  let finished = false;
  stack.defer(async () => {
    if (!finished && target.kind === 'file') await rm(target.partialPath, { force: true });
  });
  const state: CopyState = { outcomes: [], zeroBefore: [], zeroAfter: [], daemons: [] };

  const tasks: ListrTask<CopyState>[] = [
    {
      title: 'Examine source disk',
      task: () =>
        clock.time('examine', async () => {
          await examineInput(run, ui, options, state, target);
          await serveInput(run, options, state, stack);
        }),
    },
    {
      title: 'Examine filesystems',
      task: async (_, task) => {
        say(task.title);
        await clock.time('layout', async () => {
          const device = state.device!;
          state.examined = await examineDisk(run, device, { ...options, root });
          state.zeroBefore = await zeroBytesPerVolume(device, state.examined.plans);
          task.title = `Examine filesystems: ${describeVolumes(state.examined)}`;
        });
      },
    },
    {
      title: 'Create overlay file to protect source disk',
      skip: () => !state.examined!.needs.overlay && 'no volume needs a mount: the input is read as it is',
      task: async (_, task) => {
        say(task.title);
        await clock.time('overlay', async () => {
          if (options.tmp.kind === 'dir') {
            const bytes = estimateOverlayBytes(state.info!.virtualSizeBytes, state.examined!.needs.overlayVolumes);
            await checkTmpSpace(run, ui, options.tmp.path, bytes, options.checkTmpdir);
          }
          await createOverlay(run, options, state, stack);
        });
      },
    },
    volumePassTask('Free space in each filesystem', start, state, run, false),
    {
      title: 'Copy to destination and make sparse',
      task: async (_, task) => {
        say(task.title);
        await clock.time('copy', () =>
          copyToOutput(run, options, state, target, (done, total) => {
            if (ui.renderer === 'default') {
              const bar = progressBar(done, total);
              if (bar !== task.output) task.output = bar;
            }
            ui.progress?.(done, total);
          }),
        );
      },
      rendererOptions: { bottomBar: 1 },
    },
    {
      title: 'Verify the output',
      enabled: () => options.verify,
      task: async (_, task) => {
        say(task.title);
        const output = { path: writtenPath(target), format: state.outputFormat!, source: state.device!, zeroed: state.zeroed!, workDir: state.workDir! };
        state.verify = await clock.time('verify', () => verifyCopiedOutput(run, output));
      },
    },
  ];
  await runTasks(ui, tasks, state).catch(async (err: unknown) => {
    throw await explainDaemonDeath(err, state.daemons);
  });
  await assertInputUnchanged(start.input);
  const report = buildReport(options, state, warnings, clock);
  await hooks.onReport?.(report);
  await commitOutput(target);
  finished = true;
  say('Sparsify operation completed with no errors.');
  return report;
}

async function examineInput(ctx: RunContext, ui: RunUi, options: CopyOptions, state: CopyState, target: OutputTarget): Promise<void> {
  ui.message?.('Examine source disk');
  const info = await readImageInfo(ctx, options.input, options.format ? { format: options.format } : {});
  warnIfProbedRaw(ctx, info, options.input);
  await checkImage(ctx, options.input, info.format);
  const outputFormat = options.convert ?? info.format;
  if (!(OUTPUT_FORMATS as readonly string[]).includes(outputFormat)) {
    throw new SparsifyError('UNSUPPORTED', `cannot write ${outputFormat} output`, {
      hint: `use --convert with one of ${OUTPUT_FORMATS.join(', ')}`,
    });
  }
  if (options.compress && outputFormat !== 'qcow2') {
    throw new SparsifyError(
      'USAGE',
      outputFormat === 'raw'
        ? '--compress cannot be used for raw output.  Remove this option or use --convert qcow2.'
        : `--compress needs qcow2 output, not ${outputFormat}; use --convert qcow2`,
    );
  }
  if (options.outputOptions !== undefined && outputFormat === 'raw') {
    throw new SparsifyError('USAGE', '-o cannot be used for raw output: a raw image has no creation options', {
      hint: 'remove -o, or add --convert qcow2 (or another format) for an image that takes them',
    });
  }
  checkOutputFits(target, outputFormat as OutputFormat, info.virtualSizeBytes);
  if (info.snapshotCount > 0) {
    ctx.log.warn(
      `${options.input} has ${info.snapshotCount} internal snapshot${info.snapshotCount === 1 ? '' : 's'}: copy mode copies the current state only, so ${info.snapshotCount === 1 ? 'it' : 'they'} will not be in the output`,
    );
  }
  state.info = info;
  state.outputFormat = outputFormat as OutputFormat;
}

/** Serves the input read-only (qemu's shared lock) in a private work directory. */
async function serveInput(ctx: RunContext, options: CopyOptions, state: CopyState, stack: AsyncStack): Promise<void> {
  const tmp = options.tmp.kind === 'dir' ? options.tmp.path : tmpdir();
  const workDir = await makeWorkDir(tmp).catch((err: unknown) => {
    throw pathError(err, 'temporary directory', tmp);
  });
  stack.defer(() => rm(workDir, { recursive: true, force: true }));
  state.workDir = workDir;
  const served = stack.use(
    await serveImage(ctx, {
      file: options.input,
      format: state.info!.format,
      readOnly: true,
      discard: false,
      dir: workDir,
      onStarted: (p) => state.daemons.push({ ...p, serves: options.input }),
    }),
  );
  state.device = stack.use(await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName, signal: ctx.signal }));
}

async function createOverlay(ctx: RunContext, options: CopyOptions, state: CopyState, stack: AsyncStack): Promise<void> {
  const info = state.info!;
  const workDir = state.workDir!;
  let overlay: string;
  if (options.tmp.kind === 'prebuilt') {
    overlay = options.tmp.path;
    const pre = await readImageInfo(ctx, overlay, { format: 'qcow2' });
    if (!pre.backingFile) {
      throw new SparsifyError('USAGE', `--tmp prebuilt:file: ${overlay}: file does not have backing file`);
    }
  } else {
    overlay = options.tmp.kind === 'dir' ? join(workDir, 'overlay.qcow2') : options.tmp.path;
    await createImage(ctx, {
      path: overlay,
      format: 'qcow2',
      sizeBytes: info.virtualSizeBytes,
      options: ['compat=1.1'],
      backing: { path: options.input, format: info.format },
    });
  }
  const served = stack.use(
    await serveImage(ctx, {
      file: overlay,
      format: 'qcow2',
      readOnly: false,
      discard: true,
      detectZeroes: 'unmap',
      dir: workDir,
      onStarted: (p) => state.daemons.push({ ...p, serves: `the overlay ${overlay}` }),
    }),
  );
  state.export = { socketPath: served.socketPath, exportName: served.exportName };
  state.overlayDir = dirname(overlay);
  state.device = stack.use(await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName, signal: ctx.signal }));
}

async function copyToOutput(
  ctx: RunContext,
  options: CopyOptions,
  state: CopyState,
  target: OutputTarget,
  onProgress: (done: number, total: number) => void,
): Promise<void> {
  const device = state.device!;
  state.zeroAfter = await zeroBytesPerVolume(device, state.examined!.plans);
  const path = writtenPath(target);
  await using output = await openOutputImage(ctx, {
    path,
    blockDevice: target.kind === 'block-device',
    format: state.outputFormat!,
    sizeBytes: state.info!.virtualSizeBytes,
    ...(options.outputOptions ? { createOptions: options.outputOptions } : {}),
    compress: options.compress,
    workDir: state.workDir!,
  }).catch((err: unknown) => {
    throw asOutputError(err, options.output);
  });
  try {
    const skip = ExtentSet.from(state.examined!.plans.flatMap((p) => zeroingRanges(p).ranges));
    state.zeroed = skip;
    await using source = await openCopySource(device, state.export ? undefined : { path: options.input, format: state.info!.format });
    state.copy = await copyBlocks({ source, sink: output.sink, skip, signal: ctx.signal, onProgress });
    await output.finish();
  } catch (err) {
    const daemons = output.daemonExited ? [...state.daemons, { serves: options.output, exited: output.daemonExited }] : state.daemons;
    throw asOutputError(await explainDaemonDeath(err, daemons), options.output);
  }
  // A device has no "allocated" size of its own: all of it up to the virtual size was written.
  state.outputAllocatedBytes = target.kind === 'file' ? (await stat(path)).blocks * 512 : state.info!.virtualSizeBytes;
}

/** A failed write to the output, named by the output's own name rather than the temporary one. */
function asOutputError(err: unknown, output: string): unknown {
  const named = renamePathError(err, 'output', output);
  return isSparsifyError(named, 'NO_SPACE') && !(named instanceof PathError) ? pathError(named, 'output', output, 'ENOSPC') : named;
}

function describeVolumes(examined: Examined): string {
  const n = examined.plans.length;
  return `${examined.layout.table === 'none' ? 'no partition table' : examined.layout.table.toUpperCase()}, ${n} volume${n === 1 ? '' : 's'}`;
}

function buildReport(options: CopyOptions, state: CopyState, warnings: string[], clock: PhaseClock): RunReport {
  const info = state.info!;
  const volumes: VolumeReport[] = volumeReports(state.examined!.plans, state.outcomes, state.zeroBefore, state.zeroAfter);
  return {
    tool: 'sparsify',
    version: VERSION,
    mode: 'copy',
    input: { path: options.input, format: info.format, virtualSizeBytes: info.virtualSizeBytes, allocatedBytes: info.actualSizeBytes },
    output: {
      path: options.output,
      format: state.outputFormat!,
      compressed: options.compress,
      allocatedBytes: state.outputAllocatedBytes ?? 0,
    },
    partitionTable: state.examined!.layout.table,
    volumes,
    warnings,
    ...(state.copy ? { copy: state.copy } : {}),
    ...(state.verify ? { verify: state.verify } : {}),
    phases: clock.phases(),
    totalMs: clock.totalMs(),
  };
}

/** Where the copy is written: the temporary name of a file output, or the block device itself. */
function writtenPath(target: OutputTarget): string {
  return target.kind === 'file' ? target.partialPath : target.path;
}
