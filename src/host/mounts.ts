/**
 * Kernel and FUSE mounts: reading /proc/self/mountinfo, mounting with a disposable handle, and
 * unmounting that survives a busy target.
 */
import { readFile, realpath } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { makeContext, uninterruptible, type RunContext } from '../context.js';
import { throwIfCancelled } from '../errors.js';
import { ToolFailedError, runTool } from '../util/run.js';
import { once } from '../util/async-stack.js';

/** One line of /proc/self/mountinfo (proc(5)). */
export interface MountEntry {
  readonly mountPoint: string;
  readonly fsType: string;
  readonly source: string;
  /** Read-only per the mount options or the superblock options. */
  readonly readOnly: boolean;
}

/** How long release steps (umount, losetup -d, stopping daemons) may take in total. */
const RELEASE_TIMEOUT_MS = 120_000;
/** Waits between umount attempts on EBUSY: something (udev, a closing file) may still hold it. */
const BUSY_RETRY_MS = [100, 200, 400, 800, 1600];

/** Decodes mountinfo text; octal escapes (\040 for a space) in paths are undone. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    const mountPoint = fields[4];
    const fsType = fields[dash + 1];
    const source = fields[dash + 2];
    if (dash < 0 || mountPoint === undefined || fsType === undefined || source === undefined) continue;
    const readOnly = [fields[5], fields[dash + 3]].some((opts) => opts?.split(',').includes('ro') ?? false);
    entries.push({ mountPoint: unescapeOctal(mountPoint), fsType, source: unescapeOctal(source), readOnly });
  }
  return entries;
}

/** The mounts this process sees now. */
export async function readMounts(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** Whether something is mounted on `path` (compared after resolving symlinks). */
export async function isMounted(path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => path);
  return (await readMounts()).some((m) => m.mountPoint === real || m.mountPoint === path);
}

/**
 * A context for releasing resources: never aborted (the run's signal may be, and cleanup must
 * still run to the end) but bounded by a timeout so a hung umount cannot hang the exit.
 */
export function releaseContext(ctx: RunContext): RunContext {
  return makeContext(ctx.log, AbortSignal.timeout(RELEASE_TIMEOUT_MS));
}

/** A mounted filesystem; disposing unmounts it. */
export interface Mount extends AsyncDisposable {
  readonly mountPoint: string;
  readonly device: string;
  /** The mount ended up read-only although read-write was asked (ntfs-3g does that for hibernated Windows). */
  readonly readOnly: boolean;
  /** What the mount tool printed although it succeeded. */
  readonly stderr: string;
}

/** What to mount and how. */
export interface OpenMountOptions {
  readonly device: string;
  readonly mountPoint: string;
  /** `mount -t TYPE` (kernel), or 'ntfs-3g' to run the FUSE driver directly. */
  readonly fsType: string;
  readonly options: readonly string[];
}

/** Mounts `device` on `mountPoint`; throws the mount tool's ToolFailedError when it refuses. */
export async function openMount(ctx: RunContext, opts: OpenMountOptions): Promise<Mount> {
  const optionArgs = opts.options.length ? ['-o', opts.options.join(',')] : [];
  const { stderr } =
    opts.fsType === 'ntfs-3g'
      ? await runTool(uninterruptible(ctx), 'ntfs-3g', [...optionArgs, opts.device, opts.mountPoint])
      : await runTool(uninterruptible(ctx), 'mount', ['-t', opts.fsType, ...optionArgs, opts.device, opts.mountPoint]);
  const dispose = once(() => unmount(releaseContext(ctx), opts.mountPoint));
  if (ctx.signal.aborted) {
    await dispose();
    throwIfCancelled(ctx.signal);
  }
  const real = await realpath(opts.mountPoint).catch(() => opts.mountPoint);
  const entry = (await readMounts()).findLast((m) => m.mountPoint === real);
  ctx.log.debug(`mounted ${opts.device} (${opts.fsType}) on ${opts.mountPoint}${entry?.readOnly ? ' read-only' : ''}`);
  return {
    mountPoint: opts.mountPoint,
    device: opts.device,
    readOnly: entry?.readOnly ?? false,
    stderr,
    [Symbol.asyncDispose]: dispose,
  };
}

/**
 * Unmounts `path`, retrying while the target is busy, then falling back to a lazy unmount so
 * the mount at least leaves the namespace. Does nothing when nothing is mounted there.
 */
export async function unmount(ctx: RunContext, path: string): Promise<void> {
  for (const wait of [...BUSY_RETRY_MS, -1]) {
    if (!(await isMounted(path))) return;
    try {
      await runTool(ctx, 'umount', [path]);
      ctx.log.debug(`unmounted ${path}`);
      return;
    } catch (err) {
      if (!(err instanceof ToolFailedError)) throw err;
      if (/not mounted/.test(err.stderr)) return;
      if (!/busy/i.test(err.stderr) || wait < 0) break;
      await delay(wait);
    }
  }
  if (!(await isMounted(path))) return;
  ctx.log.warn(`${path} stayed busy; detaching it lazily (umount -l)`);
  await runTool(ctx, 'umount', ['-l', path]);
}

/** The first line of a mount tool's complaint, without its "mount: /path: " prefix. */
export function mountFailureReason(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^dmesg\(1\)/.test(l));
  const line = lines[0] ?? 'mount failed';
  return line.replace(/^mount: [^:]*: /, '').replace(/^ntfs-3g: /, '').replace(/\.$/, '').slice(0, 200);
}

function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
