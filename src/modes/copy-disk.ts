/**
 * What copy mode's steps do to the disks: serve the input read-only, put a writable overlay over
 * it when an engine must write, and copy what was served into the output. Each returns what the
 * next step needs; every resource goes on the run's stack.
 */
import { rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { RunContext } from '../context.js';
import { copyBlocks } from '../copy/copier.js';
import { openCopySource } from '../copy/copy-source.js';
import { ExtentSet } from '../disk/extent-set.js';
import type { BlockDevice } from '../disk/types.js';
import { SparsifyError, isSparsifyError } from '../errors.js';
import { makeWorkDir } from '../host/work-dir.js';
import { openNbdClient } from '../nbd/client.js';
import type { CopyOptions, OutputFormat } from '../options.js';
import type { VolumePlan } from '../plan/types.js';
import { checkImage, createImage, readImageInfo, type ImageInfo } from '../qemu/img.js';
import { readLayerMap } from '../qemu/img-map.js';
import { copyTopLayer } from '../copy/top-layer-copy.js';
import { decideChain, type ChainHandling } from './backing-chain.js';
import { serveImage } from '../qemu/storage-daemon.js';
import type { CopySummary } from '../report/types.js';
import type { AsyncStack } from '../util/async-stack.js';
import { PathError, pathError, renamePathError } from '../util/errno.js';
import { ovaDiskPath, writeOva } from '../export/ova.js';
import { explainDaemonDeath, type WatchedDaemon } from './daemon-death.js';
import { openOutputImage } from './output-image.js';
import { decideOutput, type OutputDecision } from './output-format.js';
import { checkOutputFits, type OutputTarget } from './output-target.js';
import { warnIfProbedRaw } from './run-setup.js';
import type { RunUi } from './ui.js';
import { zeroingRanges } from './volume-pass.js';

/** What every copy step works with: the run's context and options, its resources, its serving processes. */
export interface CopyEnv {
  readonly ctx: RunContext;
  readonly ui: RunUi;
  readonly options: CopyOptions;
  readonly stack: AsyncStack;
  /** The processes serving disks, to explain a connection that broke; each is added as it starts. */
  readonly daemons: WatchedDaemon[];
}

/** The input, served read-only in the run's work directory, and the format the output will have. */
export interface Source {
  readonly info: ImageInfo;
  readonly outputFormat: OutputFormat;
  /** Everything decided about the output (format, -o, compression, size, OVA). */
  readonly output: OutputDecision;
  /** What becomes of the input's backing chain: flattened, or kept with --keep-backing. */
  readonly chain: ChainHandling;
  readonly workDir: string;
  readonly device: BlockDevice;
}

/**
 * Reads the input's format and size, decides the output format, checks the input and that the
 * output can hold it (none: a dry run), and serves the input read-only (qemu's shared lock) in a private work
 * directory.
 */
export async function openSource(env: CopyEnv, target: OutputTarget | undefined): Promise<Source> {
  const { ctx, ui, options, stack, daemons } = env;
  ui.message?.('Examine source disk');
  const info = await readImageInfo(ctx, options.input, options.format ? { format: options.format } : {});
  warnIfProbedRaw(ctx, info, options.input);
  await checkImage(ctx, options.input, info.format);
  const output = decideOutput(options, info);
  const chain = decideChain(options, info, output);
  const outputFormat = output.format;
  if (target) checkOutputFits(target, outputFormat, output.sizeBytes);
  if (info.snapshotCount > 0) {
    ctx.log.warn(
      `${options.input} has ${info.snapshotCount} internal snapshot${info.snapshotCount === 1 ? '' : 's'}: copy mode copies the current state only, so ${info.snapshotCount === 1 ? 'it' : 'they'} will not be in the output`,
    );
  }
  const tmp = options.tmp.kind === 'dir' ? options.tmp.path : tmpdir();
  const workDir = await makeWorkDir(tmp).catch((err: unknown) => {
    throw pathError(err, 'temporary directory', tmp);
  });
  stack.defer(() => rm(workDir, { recursive: true, force: true }));
  const served = stack.use(
    await serveImage(ctx, {
      file: options.input,
      format: info.format,
      readOnly: true,
      discard: false,
      dir: workDir,
      onStarted: (p) => daemons.push({ ...p, serves: options.input }),
    }),
  );
  const device = stack.use(await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName, signal: ctx.signal }));
  return { info, outputFormat, output, chain, workDir, device };
}

/** The qcow2 overlay over the input (backing = IN) that the engines write, served writable. */
export interface Overlay {
  readonly device: BlockDevice;
  readonly export: { readonly socketPath: string; readonly exportName: string };
  /** The overlay file. */
  readonly path: string;
  /** The directory the overlay grows in. */
  readonly overlayDir: string;
}

/** Creates (or, with --tmp prebuilt:FILE, checks) the overlay and serves it with discards passed down. */
export async function openOverlay(env: CopyEnv, source: Source): Promise<Overlay> {
  const { ctx, options, stack, daemons } = env;
  let overlay: string;
  if (options.tmp.kind === 'prebuilt') {
    overlay = options.tmp.path;
    const pre = await readImageInfo(ctx, overlay, { format: 'qcow2' });
    if (!pre.backingFile) {
      throw new SparsifyError('USAGE', `--tmp prebuilt:file: ${overlay}: file does not have backing file`);
    }
  } else {
    overlay = options.tmp.kind === 'dir' ? join(source.workDir, 'overlay.qcow2') : options.tmp.path;
    await createImage(ctx, {
      path: overlay,
      format: 'qcow2',
      sizeBytes: source.info.virtualSizeBytes,
      options: ['compat=1.1'],
      backing: { path: options.input, format: source.info.format },
    });
  }
  const served = stack.use(
    await serveImage(ctx, {
      file: overlay,
      format: 'qcow2',
      readOnly: false,
      discard: true,
      detectZeroes: 'unmap',
      dir: source.workDir,
      onStarted: (p) => daemons.push({ ...p, serves: `the overlay ${overlay}` }),
    }),
  );
  const exported = { socketPath: served.socketPath, exportName: served.exportName };
  const device = stack.use(await openNbdClient({ ...exported, signal: ctx.signal }));
  return { device, export: exported, path: overlay, overlayDir: dirname(overlay) };
}

/** What the copy wrote. */
export interface Copied {
  readonly copy: CopySummary;
  /** The copier's skip set: what --verify expects to read as zero. */
  readonly zeroed: ExtentSet;
  /** Bytes the output takes on the host (a device: its whole virtual size). */
  readonly allocatedBytes: number;
}

/**
 * Copies `device` into the output, skipping every range the plans made zero; flushed when it
 * returns. With the chain kept, only what the input's top layer and `overlay` hold is copied.
 */
export async function copyToOutput(
  env: CopyEnv,
  source: Source,
  device: BlockDevice,
  plans: readonly VolumePlan[],
  target: OutputTarget,
  onProgress: (done: number, total: number) => void,
  overlay?: Overlay,
): Promise<Copied> {
  const { ctx, options, daemons } = env;
  const path = writtenPath(target);
  const decided = source.output;
  // An OVA's disk is written in the work directory first, then packed into `path` (src/export/ova.ts).
  const imagePath = decided.ova ? ovaDiskPath(source.workDir, options.output) : path;
  await using output = await openOutputImage(ctx, {
    path: imagePath,
    blockDevice: target.kind === 'block-device',
    format: decided.format,
    sizeBytes: decided.sizeBytes,
    ...(decided.createOptions ? { createOptions: decided.createOptions } : {}),
    compress: decided.compress,
    workDir: source.workDir,
    ...(target.kind === 'file' && !decided.ova ? { finalName: basename(target.path) } : {}),
    ...(source.chain.kind === 'kept' ? { backing: { name: source.chain.name, format: source.chain.format } } : {}),
  }).catch((err: unknown) => {
    throw asOutputError(err, options.output);
  });
  const zeroed = ExtentSet.from(plans.flatMap((p) => zeroingRanges(p).ranges));
  let copy: CopySummary;
  try {
    // No overlay: the input itself is read, from its file when it is raw or simple qcow2 (src/copy/copy-source.ts).
    const input = device === source.device ? { path: options.input, format: source.info.format } : undefined;
    if (source.chain.kind === 'kept') {
      const own = await ownRanges(ctx, options.input, overlay, zeroed);
      const clusterBytes = output.clusterBytes ?? DEFAULT_CLUSTER_BYTES;
      copy = await copyTopLayer({ source: device, sink: output.sink, own, zeroed, clusterBytes, signal: ctx.signal, onProgress });
    } else {
      await using from = await openCopySource(device, input, (why) => ctx.log.debug(why));
      copy = await copyBlocks({ source: from, sink: output.sink, skip: zeroed, signal: ctx.signal, onProgress });
    }
    await output.finish();
    if (decided.ova) {
      const disk = { diskPath: imagePath, ovaPath: path, name: options.output };
      await writeOva(ctx, { ...disk, virtualSizeBytes: decided.sizeBytes, populatedBytes: copy.dataBytesWritten });
    }
  } catch (err) {
    const all = output.daemonExited ? [...daemons, { serves: options.output, exited: output.daemonExited }] : daemons;
    throw asOutputError(await explainDaemonDeath(err, all), options.output);
  }
  // A device has no "allocated" size of its own: all of it up to the virtual size was written.
  const allocatedBytes = target.kind === 'file' ? (await stat(path)).blocks * 512 : source.info.virtualSizeBytes;
  return { copy, zeroed, allocatedBytes };
}

/** qemu's default qcow2 cluster size. */
const DEFAULT_CLUSTER_BYTES = 65536;

/**
 * What OUT must hold itself when it keeps IN's backing file: what IN's top layer holds, what the
 * overlay holds (the engines' writes, flushed first), and the free ranges some layer below holds
 * data for (made zero clusters, so the guest reads zeros there as after any sparsify).
 */
async function ownRanges(ctx: RunContext, input: string, overlay: Overlay | undefined, zeroed: ExtentSet): Promise<ExtentSet> {
  const layers = await readLayerMap(ctx, input, 'qcow2');
  let own = layers.top.union(zeroed.intersect(layers.present));
  if (overlay) {
    await overlay.device.flush();
    own = own.union((await readLayerMap(ctx, overlay.path, 'qcow2', { forceShare: true })).top);
  }
  return own;
}

/** A failed write to the output, named by the output's own name rather than the temporary one. */
function asOutputError(err: unknown, output: string): unknown {
  const named = renamePathError(err, 'output', output);
  return isSparsifyError(named, 'NO_SPACE') && !(named instanceof PathError) ? pathError(named, 'output', output, 'ENOSPC') : named;
}

/** Where the copy is written: the temporary name of a file output, or the block device itself. */
export function writtenPath(target: OutputTarget): string {
  return target.kind === 'file' ? target.partialPath : target.path;
}
