import { stat, truncate } from 'node:fs/promises';
import { basename } from 'node:path';
import type { RunContext } from '../context.js';
import { openRawDeviceSink, openRawFileSink } from '../copy/raw-file-sink.js';
import type { BlockSink } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { openNbdClient } from '../nbd/client.js';
import type { OutputFormat } from '../options.js';
import { createImage, readImageInfo } from '../qemu/img.js';
import type { DaemonExit } from '../qemu/daemon.js';
import { serveImage } from '../qemu/storage-daemon.js';
import { renameVmdkSelfReference } from '../qemu/vmdk-descriptor.js';
import { openCompressedQcow2Sink, zstdModulePath } from '../qcow2/compressed-sink.js';
import { chooseCompressedWriter, type CompressedImageOptions } from '../qcow2/create-options.js';
import { openPlainQcow2Sink } from '../qcow2/plain-sink.js';
import { AsyncStack } from '../util/async-stack.js';
import { fsyncFile } from '../util/fsync.js';
import { isStreamOptimized } from './output-format.js';

/** A new output image being written, and how to finish it. */
export interface OutputImage extends AsyncDisposable {
  readonly sink: BlockSink;
  /** Flushes the sink, stops its server and fsyncs the file: after this the bytes are on disk. */
  finish(): Promise<void>;
  /** The image's cluster size, where qemu-img created it with one. */
  readonly clusterBytes?: number;
  /** How the daemon serving the output ended (formats other than raw): to explain a lost connection. */
  readonly daemonExited?: Promise<DaemonExit>;
}

/** What the output should be. */
export interface OutputSpec {
  /** The file to create (a temporary name beside the final one), or the block device to write into. */
  readonly path: string;
  /** `path` is an existing block device (raw only): written in place, not created. */
  readonly blockDevice: boolean;
  readonly format: OutputFormat;
  readonly sizeBytes: number;
  /** -o creation options, as given. */
  readonly createOptions?: string;
  readonly compress: boolean;
  /** Where daemon sockets go. */
  readonly workDir: string;
  /** The name the file will have once renamed into place (a vmdk names itself in its descriptor). */
  readonly finalName?: string;
  /**
   * --keep-backing: a qcow2 over this backing file (its name as written in the header). It reads
   * as its backing file, not as zero, so the sink is not zero-initialized.
   */
  readonly backing?: { readonly name: string; readonly format: string };
}

/**
 * Creates the output image: raw → a sparse file (or an existing block device) written directly;
 * qcow2, compressed or not → written by sparsify's own writers (src/qcow2/) when the -o options
 * are ones they make; any other format, or -o options it leaves to qemu → `qemu-img create` served over NBD
 * by qemu-storage-daemon (with qemu's compress filter for --compress). A new image reads as zero everywhere, so the copier never writes zeros into it;
 * except one over a backing file (--keep-backing), always made by qemu-img create.
 */
export async function openOutputImage(ctx: RunContext, spec: OutputSpec): Promise<OutputImage> {
  if (spec.format === 'raw') return openRawOutput(spec);
  if (spec.format === 'qcow2' && !spec.blockDevice && !spec.backing) {
    // zstd is needed to compress with it, not to name it in the header of an uncompressed image.
    const zstdAvailable = !spec.compress || zstdModulePath() !== undefined;
    const choice = chooseCompressedWriter(spec.createOptions, { zstdAvailable });
    if (choice.use === 'writer') return spec.compress ? openCompressedOutput(spec, choice.options) : openPlainOutput(spec, choice.options);
    ctx.log.debug(`qcow2 output through qemu: ${choice.reason}`);
  }
  if (spec.blockDevice) throw new SparsifyError('INTERNAL', `${spec.format} output onto a block device`);
  const stack = new AsyncStack((err) => ctx.log.debug(`closing output: ${String(err)}`));
  try {
    // compat=1.1 first, so that -o may not undo it unseen: zero clusters need it (checked in backing-chain.ts).
    const options = [...(spec.backing ? ['compat=1.1'] : []), ...(spec.createOptions ? [spec.createOptions] : [])];
    if (spec.format === 'vpc' && !/force_size/.test(spec.createOptions ?? '')) options.push('force_size=on');
    const backing = spec.backing ? { backing: { path: spec.backing.name, format: spec.backing.format, asNamed: true } } : {};
    await createImage(ctx, { path: spec.path, format: spec.format, sizeBytes: spec.sizeBytes, options, ...backing });
    const info = await readImageInfo(ctx, spec.path, { format: spec.format });
    const served = stack.use(
      await serveImage(ctx, {
        file: spec.path,
        format: spec.format,
        readOnly: false,
        discard: false,
        compress: spec.compress,
        fuse: false,
        dir: spec.workDir,
      }),
    );
    const nbd = stack.use(await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName, signal: ctx.signal }));
    const streamOptimized = spec.format === 'vmdk' && isStreamOptimized(spec.createOptions);
    // Compressed clusters (and a streamOptimized vmdk's grains) are written whole and once; any
    // export also sets its own minimum.
    const wholeClusters = spec.compress || streamOptimized;
    const alignment = Math.max(wholeClusters ? (info.clusterSizeBytes ?? 65536) : 1, nbd.info.blockSizes.minimumBytes);
    const sink: BlockSink = {
      sizeBytes: nbd.sizeBytes,
      zeroInitialized: !spec.backing,
      writeAlignmentBytes: alignment,
      // qemu appends each grain of a streamOptimized vmdk in the order written; VMware's importers
      // read the stream in order, and qemu-img convert itself writes it in order (its -W refuses).
      ...(streamOptimized ? { sequential: true } : {}),
      write: (o, d) => nbd.write(o, d),
      writeZeroes: (o, l, punch) => nbd.writeZeroes(o, l, punch),
      flush: () => nbd.flush(),
    };
    const owned = stack.move();
    return {
      sink,
      async finish() {
        await nbd.flush();
        await owned[Symbol.asyncDispose]();
        if (streamOptimized) await alignEndToSector(spec.path);
        if (spec.format === 'vmdk' && spec.finalName) await renameVmdkSelfReference(spec.path, basename(spec.path), spec.finalName);
        await fsyncFile(spec.path);
      },
      [Symbol.asyncDispose]: () => owned[Symbol.asyncDispose](),
      ...(info.clusterSizeBytes !== undefined ? { clusterBytes: info.clusterSizeBytes } : {}),
      daemonExited: served.exited,
    };
  } catch (err) {
    await stack[Symbol.asyncDispose]();
    throw err;
  }
}

/**
 * qemu-img convert ends a streamOptimized vmdk with an empty compressed write, on which qemu pads
 * the file to a whole sector after the last grain; an NBD client cannot send that, so the same
 * padding is done here once the daemon has closed the image.
 */
async function alignEndToSector(path: string): Promise<void> {
  const { size } = await stat(path);
  if (size % SECTOR_BYTES !== 0) await truncate(path, Math.ceil(size / SECTOR_BYTES) * SECTOR_BYTES);
}

const SECTOR_BYTES = 512;

/** An uncompressed qcow2 written by sparsify itself (src/qcow2/plain-sink.ts): no NBD hop. */
async function openPlainOutput(spec: OutputSpec, options: CompressedImageOptions): Promise<OutputImage> {
  const sink = await openPlainQcow2Sink(spec.path, spec.sizeBytes, options);
  return { sink, finish: () => sink.finish(), [Symbol.asyncDispose]: () => sink[Symbol.asyncDispose]() };
}

/** A compressed qcow2 written by sparsify itself, compressing on every core. */
async function openCompressedOutput(spec: OutputSpec, options: CompressedImageOptions): Promise<OutputImage> {
  const sink = await openCompressedQcow2Sink(spec.path, spec.sizeBytes, options);
  return { sink, finish: () => sink.finish(), [Symbol.asyncDispose]: () => sink[Symbol.asyncDispose]() };
}

async function openRawOutput(spec: OutputSpec): Promise<OutputImage> {
  const sink = spec.blockDevice
    ? await openRawDeviceSink(spec.path, spec.sizeBytes)
    : await openRawFileSink(spec.path, spec.sizeBytes, { overwrite: false });
  return {
    sink,
    async finish() {
      await sink.flush();
      await sink[Symbol.asyncDispose]();
    },
    [Symbol.asyncDispose]: () => sink[Symbol.asyncDispose](),
  };
}
