import { rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { ListrTask } from 'listr2';
import { uninterruptible, type RunContext } from '../context.js';
import { SparsifyError, throwIfCancelled } from '../errors.js';
import { makeWorkDir } from '../host/work-dir.js';
import { openNbdClient } from '../nbd/client.js';
import type { InPlaceOptions } from '../options.js';
import { checkImage, readImageInfo, type ImageInfo } from '../qemu/img.js';
import { serveImage } from '../qemu/storage-daemon.js';
import type { RunReport } from '../report/types.js';
import { AsyncStack } from '../util/async-stack.js';
import { readInPlaceBaseline, verifyInPlace, type InPlaceBaseline } from '../verify/in-place.js';
import { VERSION } from '../version.js';
import { explainDaemonDeath } from './daemon-death.js';
import { isRoot } from './preflight.js';
import { punchFreeQcow2Clusters } from './qcow2-punch.js';
import { humanBytes } from '../util/size.js';
import { startRun, volumePassTask, warnIfProbedRaw, type PassState } from './run-setup.js';
import { runTasks, type RunUi } from './ui.js';
import { examineDisk, volumeReports, zeroBytesPerVolume } from './volume-pass.js';

/** Formats whose discarded blocks qemu gives back to the host file. */
const DISCARDING_FORMATS: ReadonlySet<string> = new Set(['raw', 'qcow2']);

interface InPlaceState extends PassState {
  info?: ImageInfo;
  allocatedBefore?: number;
  /** --verify: what the pass must not change, read before it. */
  baseline?: InPlaceBaseline;
  /** The processes serving the image, to explain a failure their death caused. */
}

/**
 * In-place mode: `sparsify --in-place DISK`. The image itself is served (holding qemu's write
 * lock) with discards passed down to the host file, each volume's free space is trimmed, and
 * the file's allocated size drops. Ctrl-C stops between volumes: a volume being trimmed is
 * finished first, so every filesystem is consistent when the run ends.
 */
export async function sparsifyInPlace(options: InPlaceOptions, ctx: RunContext, ui: RunUi): Promise<RunReport> {
  const start = await startRun(ctx, ui, options);
  const { warnings, clock, say } = start;
  const log = start.run.log;
  // The image is being changed: nothing below may be cut half-way by the signal. The signal is
  // checked between volumes instead (virt-sparsify does the same).
  const work: RunContext = uninterruptible(start.run);

  await using stack = new AsyncStack((err) => log.debug(`cleanup: ${String(err)}`));
  const state: InPlaceState = { outcomes: [], zeroBefore: [], zeroAfter: [], daemons: [] };
  const tasks: ListrTask<InPlaceState>[] = [
    {
      title: 'Examine disk',
      task: () => clock.time('examine', () => openInPlace(work, ui, options, state, stack)),
    },
    {
      title: 'Examine filesystems',
      task: async (_, task) => {
        say(task.title);
        await clock.time('layout', async () => {
          state.examined = await examineDisk(work, state.device!, { ...options, noZero: false, root: isRoot() });
          state.zeroBefore = await zeroBytesPerVolume(state.device!, state.examined.plans);
        });
      },
    },
    {
      title: 'Checksum what the pass must not change',
      enabled: () => options.verify,
      task: () => clock.time('verify checksum', async () => void (state.baseline = await readInPlaceBaseline(state.device!, state.examined!.plans, ctx.signal))),
    },
    volumePassTask('Give free space back to the host', start, state, work, true),
    {
      title: 'Flush',
      task: async () => {
        throwIfCancelled(ctx.signal);
        await clock.time('flush', async () => {
          await state.device!.flush();
          state.zeroAfter = await zeroBytesPerVolume(state.device!, state.examined!.plans);
        });
      },
    },
  ];
  await runTasks(ui, tasks, state).catch(async (err: unknown) => {
    throw await explainDaemonDeath(err, state.daemons, 'only free blocks were discarded');
  });
  await stack[Symbol.asyncDispose]();
  const qcow2 = state.info!.format === 'qcow2' ? await clock.time('qcow2 refcounts', () => punchQcow2(work, options.input, say)) : undefined;
  const verify = state.baseline && (await clock.time('verify', () => verifyInPlace(start.run, state.baseline!, options.input, state.info!.format)));
  const allocatedAfter = await allocatedBytes(options.input);
  say('Sparsify in-place operation completed with no errors');
  return {
    tool: 'sparsify',
    version: VERSION,
    mode: 'in-place',
    input: {
      path: options.input,
      format: state.info!.format,
      virtualSizeBytes: state.info!.virtualSizeBytes,
      allocatedBytes: state.allocatedBefore!,
    },
    allocatedBytesAfter: allocatedAfter,
    ...(qcow2 ? { notes: [`qcow2: ${qcow2}`] } : {}),
    ...(verify ? { verify } : {}),
    partitionTable: state.examined!.layout.table,
    volumes: volumeReports(state.examined!.plans, state.outcomes, state.zeroBefore, state.zeroAfter),
    warnings,
    phases: clock.phases(),
    totalMs: clock.totalMs(),
  };
}

async function openInPlace(ctx: RunContext, ui: RunUi, options: InPlaceOptions, state: InPlaceState, stack: AsyncStack): Promise<void> {
  ui.message?.('Examine disk');
  const info = await readImageInfo(ctx, options.input, options.format ? { format: options.format } : {});
  warnIfProbedRaw(ctx, info, options.input);
  if (!DISCARDING_FORMATS.has(info.format)) {
    throw new SparsifyError('NO_DISCARD', `discard/trim is not supported on ${info.format} images`, {
      hint: 'use copy mode: sparsify IN OUT (with --convert to keep or change the format)',
    });
  }
  if (info.backingFile) {
    throw new SparsifyError('UNSUPPORTED', `${options.input} has a backing file; in place only its own clusters could be freed`, {
      hint: 'use copy mode, or commit the overlay into its backing file first (qemu-img commit)',
    });
  }
  await checkImage(ctx, options.input, info.format);
  state.info = info;
  state.allocatedBefore = await allocatedBytes(options.input);
  const workDir = await makeWorkDir(tmpdir());
  stack.defer(() => rm(workDir, { recursive: true, force: true }));
  state.workDir = workDir;
  const served = stack.use(
    await serveImage(ctx, {
      file: options.input,
      format: info.format,
      readOnly: false,
      discard: true,
      detectZeroes: 'unmap',
      dir: workDir,
      onStarted: (p) => state.daemons.push({ ...p, serves: options.input }),
    }),
  );
  state.export = { socketPath: served.socketPath, exportName: served.exportName };
  const nbd = stack.use(await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName }));
  if (!nbd.info.canTrim || !nbd.info.canWriteZeroes) {
    throw new SparsifyError('NO_DISCARD', `discard/trim is not supported on ${options.input}`, { hint: 'use copy mode: sparsify IN OUT' });
  }
  state.device = nbd;
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
