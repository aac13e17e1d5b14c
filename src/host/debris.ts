/**
 * What a killed run leaves, and its removal by the next run. SIGKILL gives sparsify no chance to
 * clean up: its children get their parent-death signal (util/run.ts), but its work directory,
 * a partial output and, with the mount engine, the mounts and loop devices inside that work
 * directory stay. The next run removes them, with one warning line for each, and never touches
 * what a live run owns (work directories carry their owner, see work-dir.ts).
 */
import { lstat, readdir, readFile, realpath, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { RunContext } from '../context.js';
import { detachLoopDevice, listLoopDevices } from './loop.js';
import { readMounts, releaseContext, unmount, type MountEntry } from './mounts.js';
import { livenessOf, pidExists, readSelfIdentity, type ProcessIdentity } from './process-identity.js';
import { WORK_DIR_PREFIX, claimDeadWorkDir, readWorkDirOwner } from './work-dir.js';

/** Where a dead run may have left things. */
export interface DebrisPlaces {
  /** Directories that hold work directories (the temporary directory, --tmp). */
  readonly tmpDirs: readonly string[];
  /** The output's directory, where a copy writes its partial output. */
  readonly outputDir?: string;
}

/** A partial output: `….sparsify-PID.partial` in the output's directory (the copy's own name). */
const PARTIAL_NAME = /\.sparsify-(\d+)\.partial$/;
/** How long a daemon that outlived its run gets between SIGTERM and SIGKILL. */
const DAEMON_STOP_MS = 3000;
const POLL_MS = 50;

/**
 * Removes the debris of dead runs in `places`. Never fails the run: what cannot be removed is
 * named in a warning and left.
 */
export async function removeDebris(ctx: RunContext, places: DebrisPlaces): Promise<void> {
  const self = await readSelfIdentity();
  for (const parent of await realDirs(places.tmpDirs)) {
    for (const { dir, owner } of await deadWorkDirs(parent, self)) {
      try {
        await removeDeadWorkDir(ctx, dir, owner);
      } catch (err) {
        ctx.log.warn(`could not remove what sparsify run ${owner.pid} left in ${dir} when it was killed: ${String(err)}`);
      }
    }
  }
  if (places.outputDir !== undefined) await removeDeadPartials(ctx, places.outputDir);
}

async function realDirs(dirs: readonly string[]): Promise<string[]> {
  const real = await Promise.all(dirs.map((d) => realpath(d).catch(() => undefined)));
  return [...new Set(real.filter((d): d is string => d !== undefined))];
}

/** Marked work directories under `parent` whose owner is dead, claimed by this run. */
async function deadWorkDirs(parent: string, self: ProcessIdentity): Promise<{ dir: string; owner: ProcessIdentity }[]> {
  const entries = await readdir(parent, { withFileTypes: true }).catch(() => []);
  const dead: { dir: string; owner: ProcessIdentity }[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || !entry.name.startsWith(WORK_DIR_PREFIX)) continue;
    const dir = join(parent, entry.name);
    if (!(await mayRemove(dir))) continue;
    const owner = await readWorkDirOwner(dir);
    if (!owner || (await livenessOf(owner, self)) !== 'dead') continue;
    if (await claimDeadWorkDir(dir, self)) dead.push({ dir, owner });
  }
  return dead;
}

/**
 * Releases, in the order the kernel needs, what the dead run held in `dir`: filesystems mounted
 * on loop devices, the loop devices over its FUSE files, the FUSE files, daemons that outlived
 * it; then removes the directory, unless something is still mounted in it (never delete
 * through a mount: in place, that would be the user's filesystem).
 */
async function removeDeadWorkDir(ctx: RunContext, dir: string, owner: ProcessIdentity): Promise<void> {
  const rctx = releaseContext(ctx);
  const released: string[] = [];
  if (isRoot()) {
    for (const m of await mountsUnder(dir)) {
      if (!m.source.startsWith('/dev/loop')) continue;
      await unmount(rctx, m.mountPoint);
      released.push(`unmounted ${m.mountPoint}`);
    }
    for (const loop of await listLoopDevices()) {
      if (!isUnder(loop.backingFile, dir)) continue;
      await detachLoopDevice(rctx, loop.device, loop.backingFile);
      released.push(`detached ${loop.device}`);
    }
    for (const m of (await mountsUnder(dir)).reverse()) {
      await unmount(rctx, m.mountPoint);
      released.push(`unmounted ${m.mountPoint}`);
    }
  }
  released.push(...(await stopLeftoverDaemons(dir)));
  const stillMounted = await mountsUnder(dir);
  if (stillMounted.length > 0) {
    const how = isRoot() ? 'it is still mounted' : 'unmount it as root';
    ctx.log.warn(`sparsify run ${owner.pid} was killed and left ${stillMounted[0]!.mountPoint} mounted; ${how}, then remove ${dir}`);
    return;
  }
  await rm(dir, { recursive: true, force: true });
  const details = released.length > 0 ? ` (${released.join(', ')})` : '';
  ctx.log.warn(`removed ${dir}, left by sparsify run ${owner.pid} when it was killed${details}`);
}

/** Mounts at or below `dir`, in mount order. */
async function mountsUnder(dir: string): Promise<MountEntry[]> {
  return (await readMounts()).filter((m) => isUnder(m.mountPoint, dir));
}

/**
 * Stops the daemons whose pid files are in `dir` and which still run with that pid file on
 * their command line (a daemon that started just as its parent died, before the parent-death
 * signal was set).
 */
async function stopLeftoverDaemons(dir: string): Promise<string[]> {
  const stopped: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.pid')) continue;
    const pidFile = join(dir, name);
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (!Number.isSafeInteger(pid) || pid <= 1) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.split('\0').includes(pidFile)) continue;
    await stopProcess(pid);
    stopped.push(`stopped ${cmdline.split('\0')[0] ?? 'process'} ${pid}`);
  }
  return stopped;
}

async function stopProcess(pid: number): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    const deadline = Date.now() + DAEMON_STOP_MS;
    while (Date.now() < deadline) {
      if (!(await pidExists(pid))) return;
      await delay(POLL_MS);
    }
  }
}

/** Removes partial outputs in `dir` whose run no longer exists. */
async function removeDeadPartials(ctx: RunContext, dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(PARTIAL_NAME.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid || (await pidExists(pid))) continue;
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile() || !(await mayRemove(path))) continue;
    try {
      await rm(path, { force: true });
      ctx.log.warn(`removed ${path}, a partial output left by sparsify run ${pid} when it was killed`);
    } catch (err) {
      ctx.log.warn(`could not remove ${path}, a partial output left by a killed sparsify run: ${String(err)}`);
    }
  }
}

/** Only our own files, unless root: another user's run is theirs to clean up. */
async function mayRemove(path: string): Promise<boolean> {
  if (isRoot()) return true;
  const st = await lstat(path).catch(() => undefined);
  return st !== undefined && st.uid === process.getuid?.();
}

function isUnder(path: string, dir: string): boolean {
  return path.startsWith(`${dir}/`);
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}
