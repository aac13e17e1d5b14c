/**
 * A run's private work directory (sockets, pid files, FUSE files, mount points, the overlay).
 * Each carries a marker naming its owner, so that a later run can tell a dead run's directory
 * from a live one's and never touches the latter (other runs share the temporary directory).
 */
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoOf } from '../util/errno.js';
import { livenessOf, parseProcessIdentity, readSelfIdentity, type Liveness, type ProcessIdentity } from './process-identity.js';

/** Every work directory is `PARENT/sparsify-XXXXXX`. */
export const WORK_DIR_PREFIX = 'sparsify-';
/** The owner's identity (JSON), written right after the directory is made. */
export const OWNER_FILE = '.sparsify-owner';
/** The identity of the run that is removing a dead run's directory. */
const CLEANER_FILE = '.sparsify-cleaner';

/** Makes a work directory under `parent`, marked as this process's. */
export async function makeWorkDir(parent: string): Promise<string> {
  const dir = await mkdtemp(join(parent, WORK_DIR_PREFIX));
  try {
    await writeFile(join(dir, OWNER_FILE), JSON.stringify(await readSelfIdentity()), { flag: 'wx' });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

/** The owner a work directory's marker names, or undefined (no marker: never treated as dead). */
export async function readWorkDirOwner(dir: string): Promise<ProcessIdentity | undefined> {
  const text = await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseProcessIdentity(text);
}

/**
 * Claims a dead run's directory for removal, so that two runs starting at once do not both
 * unmount and detach in it. A claim whose own owner died is taken over.
 */
export async function claimDeadWorkDir(dir: string, self: ProcessIdentity): Promise<boolean> {
  const path = join(dir, CLEANER_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, JSON.stringify(self), { flag: 'wx' });
      return true;
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') return false;
    }
    const other = parseProcessIdentity(await readFile(path, 'utf8').catch(() => ''));
    const liveness: Liveness = other ? await livenessOf(other, self) : 'unknown';
    if (liveness !== 'dead') return false;
    await unlink(path).catch(() => undefined);
  }
  return false;
}
