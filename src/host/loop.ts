/** Loop devices over a byte window of a file (a volume inside a FUSE-exported image). */
import { readdir, readFile, realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { uninterruptible, type RunContext } from '../context.js';
import { SparsifyError, throwIfCancelled } from '../errors.js';
import { once } from '../util/async-stack.js';
import { ToolFailedError, runTool } from '../util/run.js';
import { releaseContext } from './mounts.js';

/** An attached loop device; disposing detaches it and waits until the kernel let it go. */
export interface LoopDevice extends AsyncDisposable {
  readonly path: string;
}

/** Where the loop device looks. */
export interface OpenLoopOptions {
  readonly file: string;
  readonly offsetBytes: number;
  readonly sizeBytes: number;
  readonly readOnly: boolean;
}

/** A detach is lazy while something still holds the device open (ntfs-3g exiting, udev probing). */
const DETACH_TIMEOUT_MS = 15_000;
const DETACH_POLL_MS = 50;

/**
 * Attaches a free loop device to [offsetBytes, offsetBytes+sizeBytes) of `file`. The kernel
 * does not scan partitions on loop devices here, so the window is given explicitly.
 */
export async function openLoopDevice(ctx: RunContext, opts: OpenLoopOptions): Promise<LoopDevice> {
  if (opts.offsetBytes % 512 !== 0 || opts.sizeBytes % 512 !== 0 || opts.sizeBytes <= 0) {
    throw new SparsifyError('INTERNAL', `loop window ${opts.offsetBytes}+${opts.sizeBytes} is not whole 512-byte sectors`);
  }
  const args = ['--find', '--show', '--offset', String(opts.offsetBytes), '--sizelimit', String(opts.sizeBytes)];
  if (opts.readOnly) args.push('--read-only');
  const { stdout } = await runTool(uninterruptible(ctx), 'losetup', [...args, opts.file]);
  const path = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(path)) {
    throw new SparsifyError('TOOL_FAILED', `losetup printed an unexpected device name: ${path.slice(0, 80)}`);
  }
  ctx.log.debug(`attached ${path} to ${opts.file} at ${opts.offsetBytes}+${opts.sizeBytes}`);
  const backing = await realpath(opts.file);
  const loop = { path, [Symbol.asyncDispose]: once(() => detachLoopDevice(releaseContext(ctx), path, backing)) };
  if (ctx.signal.aborted) {
    await loop[Symbol.asyncDispose]();
    throwIfCancelled(ctx.signal);
  }
  return loop;
}

/** Detaches `device` if it still shows `backingFile`, then waits until it no longer does. */
export async function detachLoopDevice(ctx: RunContext, device: string, backingFile: string): Promise<void> {
  if ((await loopBackingFile(device)) !== backingFile) return;
  try {
    await runTool(ctx, 'losetup', ['--detach', device]);
  } catch (err) {
    // ENXIO: the kernel already cleared it (autoclear after a lazy detach).
    if (!(err instanceof ToolFailedError) || !/No such device/.test(err.stderr)) throw err;
  }
  const deadline = Date.now() + DETACH_TIMEOUT_MS;
  // Another user may attach the same number right after us: compare the backing file, not mere existence.
  while ((await loopBackingFile(device)) === backingFile) {
    if (Date.now() > deadline) {
      ctx.log.warn(`${device} is still attached to ${backingFile}; it will detach when its last user closes it`);
      return;
    }
    await delay(DETACH_POLL_MS);
  }
  ctx.log.debug(`detached ${device}`);
}

/** The file a loop device is attached to, or undefined when it is free. */
export async function loopBackingFile(device: string): Promise<string | undefined> {
  const text = await readFile(`/sys/block/${basename(device)}/loop/backing_file`, 'utf8').catch(() => undefined);
  return text?.trim().replace(/ \(deleted\)$/, '');
}

/** An attached loop device and the file behind it. */
export interface AttachedLoop {
  readonly device: string;
  readonly backingFile: string;
}

/** Every attached loop device (from sysfs, as `losetup --list` reads it). */
export async function listLoopDevices(): Promise<AttachedLoop[]> {
  const names = (await readdir('/sys/block').catch(() => [] as string[])).filter((n) => /^loop\d+$/.test(n));
  const loops: AttachedLoop[] = [];
  for (const name of names) {
    const backingFile = await loopBackingFile(name);
    if (backingFile !== undefined) loops.push({ device: `/dev/${name}`, backingFile });
  }
  return loops;
}
