/**
 * The mount engine (root only): a loop device over the volume's window of the FUSE-exported
 * image, a kernel (or ntfs-3g) mount, and fstrim — the filesystem itself says which blocks are
 * free, after replaying its own journal into the image. Where trimming is unsupported the free
 * space is filled with zeros, which the daemon's detect-zeroes=unmap turns into holes.
 */
import { mkdtemp, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../../context.js';
import { ExtentSet } from '../../disk/extent-set.js';
import { isSparsifyError } from '../../errors.js';
import type { ProbeResult } from '../../fs/types.js';
import type { Volume } from '../../layout/types.js';
import { AsyncStack } from '../../util/async-stack.js';
import { ToolFailedError, runTool } from '../../util/run.js';
import { openLoopDevice } from '../../host/loop.js';
import { mountFailureReason, openMount, type Mount } from '../../host/mounts.js';
import { mountPlanFor, type MountPlan } from './mount-plan.js';
import { zeroFillFreeSpace } from './zero-fill.js';

/** What the mount engine did with one volume. */
export type MountOutcome =
  | { status: 'trimmed'; method: 'fstrim' | 'zero-fill'; trimmedBytes?: number; note?: string }
  | { status: 'not-mountable'; reason: string }
  /** Mounted, but fstrim is not supported and zero-fill was not allowed. */
  | { status: 'no-trim'; reason: string };

/** The volume to trim and where its bytes are reachable as a file. */
export interface TrimByMountOptions {
  /** The whole disk as a file (the FUSE export of the overlay or of the image in place). */
  readonly fuseFile: string;
  readonly volume: Volume;
  readonly fs: ProbeResult;
  /** A private directory for the mount point. */
  readonly workDir: string;
  /**
   * Fill free space with zeros where fstrim is unsupported (default true). In place this is
   * off: zeros written into a partly used qcow2 cluster allocate it, so the image would grow.
   */
  readonly zeroFill?: boolean;
  /**
   * Byte ranges of the volume (volume offsets) fstrim should not reach: partition-table
   * structures in the filesystem's free space. fstrim is given the ranges between them. XFS
   * trims exactly those; ext4 discards a whole free extent that starts inside a range, past its
   * end, and btrfs trims its unallocated device space whatever the range (both seen on Linux
   * 6.18); zero-fill cannot avoid anything: the volume pass writes back whatever they reached.
   */
  readonly keep?: ExtentSet;
}

/**
 * What fstrim ranges are aligned to, inward around kept bytes: FITRIM rounds its start down to
 * a filesystem block (ext4_trim_fs), so a range must begin on a boundary of every block and
 * cluster size the mounted filesystems use (ext4, XFS, btrfs and FAT stay far below 1 MiB).
 */
export const TRIM_ALIGN_BYTES = 1024 * 1024;

/**
 * The ranges (filesystem byte offsets) fstrim may be given for a volume of `sizeBytes` so that it
 * never trims a byte of `keep`; undefined when nothing is kept (one fstrim over everything).
 */
export function trimRanges(sizeBytes: number, keep: ExtentSet): ExtentSet | undefined {
  if (keep.isEmpty) return undefined;
  const widened = keep.ranges.map((r) => ({
    start: Math.floor(r.start / TRIM_ALIGN_BYTES) * TRIM_ALIGN_BYTES,
    end: Math.ceil(r.end / TRIM_ALIGN_BYTES) * TRIM_ALIGN_BYTES,
  }));
  return ExtentSet.of(0, sizeBytes).subtract(ExtentSet.from(widened));
}

/** Bytes from `fstrim -v` ("/mnt: 181.9 MiB (190755840 bytes) trimmed"), or undefined. */
export function parseFstrimBytes(stdout: string): number | undefined {
  const m = /\((\d+) bytes\) trimmed/.exec(stdout);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/**
 * Mounts the volume read-write through a loop device over `fuseFile`, trims its free space (or
 * zero-fills it), and releases mount and loop device whatever happens, abort included.
 */
export async function trimByMount(ctx: RunContext, opts: TrimByMountOptions): Promise<MountOutcome> {
  const plan = mountPlanFor(opts.fs);
  if (plan.kind === 'unmountable') return { status: 'not-mountable', reason: plan.reason };
  const name = opts.volume.name;
  await using stack = new AsyncStack((err) => ctx.log.warn(`${name}: releasing the mount: ${errorText(err)}`));
  const loop = stack.use(
    await openLoopDevice(ctx, {
      file: opts.fuseFile,
      offsetBytes: opts.volume.offsetBytes,
      sizeBytes: opts.volume.sizeBytes,
      readOnly: false,
    }),
  );
  const mountPoint = await mkdtemp(join(opts.workDir, 'mnt-'));
  stack.defer(() => rmdir(mountPoint));
  const mounted = await tryMount(ctx, loop.path, mountPoint, plan);
  if (typeof mounted === 'string') return { status: 'not-mountable', reason: mounted };
  stack.use(mounted);
  // ntfs-3g mounts a hibernated or fast-restarted Windows volume read-only and exits 0; its
  // on-disk free map is stale then (Windows holds metadata in memory), so it must not be trimmed,
  // and fstrim on such a read-only ntfs-3g mount does trim.
  if (mounted.readOnly) {
    return { status: 'not-mountable', reason: mountFailureReason(mounted.stderr || 'mounted read-only only') };
  }
  const ranges = trimRanges(opts.volume.sizeBytes, opts.keep ?? ExtentSet.empty);
  return await freeSpace(ctx, mountPoint, name, opts.zeroFill ?? true, ranges);
}

async function tryMount(
  ctx: RunContext,
  device: string,
  mountPoint: string,
  plan: Extract<MountPlan, { kind: 'mount' }>,
): Promise<Mount | string> {
  try {
    return await openMount(ctx, { device, mountPoint, fsType: plan.fsType, options: plan.options });
  } catch (err) {
    if (isSparsifyError(err, 'TOOL_MISSING')) return err.message;
    if (!(err instanceof ToolFailedError)) throw err;
    if (plan.fsType !== 'ntfs-3g' && !(await kernelHasFilesystem(plan.fsType))) {
      return `no ${plan.fsType} driver in this kernel`;
    }
    return mountFailureReason(err.stderr);
  }
}

async function freeSpace(
  ctx: RunContext,
  mountPoint: string,
  name: string,
  zeroFill: boolean,
  ranges: ExtentSet | undefined,
): Promise<MountOutcome> {
  try {
    const trimmedBytes = await runFstrim(ctx, mountPoint, name, ranges);
    return { status: 'trimmed', method: 'fstrim', ...(trimmedBytes !== undefined ? { trimmedBytes } : {}) };
  } catch (err) {
    if (!(err instanceof ToolFailedError)) throw err;
    const why = mountFailureReason(err.stderr).replace(/^fstrim: [^:]*: /, '');
    if (!zeroFill) return { status: 'no-trim', reason: `fstrim failed (${why})` };
    ctx.log.debug(`${name}: fstrim failed (${why}); filling free space with zeros instead`);
    const trimmedBytes = await zeroFillFreeSpace(ctx, mountPoint);
    return { status: 'trimmed', method: 'zero-fill', trimmedBytes, note: `fstrim failed (${why}): free space zero-filled` };
  }
}

/**
 * fstrim over the whole filesystem, or over each of `ranges` (`--offset`/`--length`). A range
 * refused after one that worked starts past the filesystem's end (a filesystem smaller than its
 * partition: FITRIM says EINVAL), so the rest are skipped; a refused first range throws.
 */
async function runFstrim(
  ctx: RunContext,
  mountPoint: string,
  name: string,
  ranges: ExtentSet | undefined,
): Promise<number | undefined> {
  if (!ranges) return parseFstrimBytes((await runTool(ctx, 'fstrim', ['-v', mountPoint])).stdout);
  let total = 0;
  for (const [i, r] of ranges.ranges.entries()) {
    const argv = ['-v', '--offset', String(r.start), '--length', String(r.end - r.start), mountPoint];
    try {
      total += parseFstrimBytes((await runTool(ctx, 'fstrim', argv)).stdout) ?? 0;
    } catch (err) {
      if (i === 0 || !(err instanceof ToolFailedError)) throw err;
      ctx.log.debug(`${name}: fstrim of bytes ${r.start}–${r.end} refused (${err.stderr.trim()}): past the filesystem's end`);
      break;
    }
  }
  return total;
}

/** Whether the running kernel has a driver for `fsType` now (mount would have autoloaded a module). */
async function kernelHasFilesystem(fsType: string): Promise<boolean> {
  const text = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  return text.split('\n').some((line) => line.split('\t').pop()?.trim() === fsType);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
