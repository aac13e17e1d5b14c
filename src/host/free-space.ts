/**
 * A full temporary directory shows up as something else: qemu-storage-daemon "cannot create PID
 * file", a mount that "can't read superblock" because the qcow2 overlay under the loop device
 * could not grow (its writes fail, the kernel sees EIO). After such a failure, the free space of
 * the directory is the real signal.
 */
import { statfs } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { WORK_DIR_PREFIX } from './work-dir.js';
import { pathError, type PathError } from '../util/errno.js';

/**
 * Below this the overlay may fail to grow: one write can need a data cluster, an L2 table and a
 * refcount block (64 KiB each), and a mount writes several (journal, superblock).
 */
export const OVERLAY_HEADROOM_BYTES = 1024 * 1024;

/**
 * NO_SPACE when `dir` has (almost) no room left, else undefined. It names the directory the user
 * chose (TMPDIR, --tmp): the parent of a run's own work directory.
 */
export async function fullDirError(dir: string, cause: unknown): Promise<PathError | undefined> {
  const st = await statfs(dir).catch(() => undefined);
  if (!st || st.bavail * st.bsize >= OVERLAY_HEADROOM_BYTES) return undefined;
  const named = basename(dir).startsWith(WORK_DIR_PREFIX) ? dirname(dir) : dir;
  return pathError(cause, 'temporary directory', named, 'ENOSPC') as PathError;
}
