/**
 * A FUSE file over an NBD export, served by nbdfuse (libnbd). sparsify uses it instead of
 * qemu-storage-daemon's own `type=fuse` export because qemu 7.2 cannot export one node writable
 * over FUSE and NBD at once: the FUSE export takes the RESIZE permission, which every NBD export
 * unshares ("Permission conflict on node …: permissions 'resize' are both required … and
 * unshared …"). Through nbdfuse both views go through the same qemu node and stay coherent.
 */
import { rm, writeFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import { once } from '../util/async-stack.js';
import { isMounted, releaseContext, unmount } from './mounts.js';
import { describeExit, startDaemon, type DaemonExit } from '../qemu/daemon.js';

/** A mounted FUSE file; disposing unmounts it and waits for nbdfuse to exit. */
export interface NbdFuseFile extends AsyncDisposable {
  readonly path: string;
  readonly pid: number;
  readonly exited: Promise<DaemonExit>;
}

/** Which export to show, and where. */
export interface NbdFuseOptions {
  readonly socketPath: string;
  readonly exportName: string;
  /** The regular file to mount over (created here; nbdfuse ≥ 1.6 "naked" mountpoint). */
  readonly path: string;
  readonly pidFile: string;
  readonly readOnly: boolean;
  readonly readyTimeoutMs: number;
}

const EXIT_AFTER_UNMOUNT_MS = 3000;

/** Mounts the export as a file and returns once nbdfuse says it is serving and the mount exists. */
export async function openNbdFuse(ctx: RunContext, opts: NbdFuseOptions): Promise<NbdFuseFile> {
  await writeFile(opts.path, '', { flag: 'wx' });
  const uri = `nbd+unix:///${encodeURIComponent(opts.exportName)}?socket=${encodeURIComponent(opts.socketPath)}`;
  const args = [...(opts.readOnly ? ['--readonly'] : []), '--pidfile', opts.pidFile, opts.path, uri];
  let daemon;
  try {
    daemon = await startDaemon(ctx, 'nbdfuse', args, {
      pidFile: opts.pidFile,
      readyTimeoutMs: opts.readyTimeoutMs,
      explainEarlyExit: (exit) => new SparsifyError('TOOL_FAILED', describeExit('nbdfuse', exit)),
      // Not SIGTERM: on SIGTERM nbdfuse (libfuse, as root) detaches its mount lazily, and a loop
      // device over the file then shows its backing file as "/", tied to no run any more. Killed,
      // it leaves the mount where it was, inside the run's work directory, where the next run's
      // cleanup finds the loop device by its backing path and releases mount, loop, FUSE file.
      deathSignal: 'SIGKILL',
    });
  } catch (err) {
    await cleanUp(releaseContext(ctx), opts);
    throw err;
  }
  const started = daemon;
  const close = once(async () => {
    const rctx = releaseContext(ctx);
    started.expectExit();
    await unmount(rctx, opts.path);
    await Promise.race([started.exited, delay(EXIT_AFTER_UNMOUNT_MS, undefined, { ref: false })]);
    await started.stop('SIGTERM', 5000);
    await cleanUp(rctx, opts);
  });
  if (!(await isMounted(opts.path))) {
    await close();
    throw new SparsifyError('TOOL_FAILED', `nbdfuse reported ready but ${opts.path} is not mounted`);
  }
  return { path: opts.path, pid: started.pid, exited: started.exited, [Symbol.asyncDispose]: close };
}

/** Removes the mountpoint file and pid file, first detaching a mount a killed nbdfuse left behind. */
async function cleanUp(ctx: RunContext, opts: NbdFuseOptions): Promise<void> {
  await unmount(ctx, opts.path);
  await rm(opts.pidFile, { force: true });
  await rm(opts.path, { force: true });
}
