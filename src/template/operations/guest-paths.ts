/**
 * Guest paths through the appliance, treated as untrusted input.
 *
 * Why nothing here can leave the guest's tree: every command runs inside the libguestfs
 * appliance (a VM whose only disk is the guest's), so the host's files are out of reach by
 * construction. Inside the appliance, libguestfs' daemon runs most file calls (glob-expand,
 * is-file, is-dir, realpath, rm-f, truncate, write, read-lines) chrooted into the guest's tree,
 * where `..` and absolute symlinks resolve inside the guest; rm-rf, du and find0 run on
 * /sysroot paths outside the chroot, where a symlink in a parent could point into the
 * appliance itself. So every path is acted on with its parent first resolved by realpath (in
 * the chroot), and the last component is never followed: rm-rf and du do not follow it, and
 * files are tested with is-file/is-dir, which do not either.
 */
import type { Appliance } from '../../engines/appliance/guestfish.js';
import { globMatches, joinPath, parentOf, baseName } from './glob.js';

const lines = (stdout: string): string[] => stdout.split('\n').filter((l) => l !== '');
const yes = async (g: Appliance, command: string, path: string): Promise<boolean> => (await g.run(command, path)).trim() === 'true';

/** A regular file (a symlink is not). */
export const isFile = (g: Appliance, path: string): Promise<boolean> => yes(g, 'is-file', path);
/** A directory (a symlink is not). */
export const isDir = (g: Appliance, path: string): Promise<boolean> => yes(g, 'is-dir', path);

/**
 * The paths the guest has for `glob`, keeping only those the pattern could have produced:
 * glob-expand prints one a line, and a name may hold a newline. Without directoryslash:false it
 * would mark directories with a trailing slash (GLOB_MARK).
 */
export async function expandGlob(g: Appliance, glob: string): Promise<string[]> {
  const found = lines(await g.run('glob-expand', glob, 'directoryslash:false'));
  return [...new Set(found.filter((p) => globMatches(glob, p)))];
}

/** Names from ls0 (a directory's entries) or find0 (everything below it, relative), NUL-separated so any name comes back whole. */
export async function listNames(g: Appliance, command: 'ls0' | 'find0', dir: string): Promise<string[]> {
  return (await g.run(command, dir, '-')).split('\0').filter((n) => n !== '');
}

/** The path with its parent resolved inside the guest (undefined when the parent is gone). */
export async function resolveParent(g: Appliance, path: string): Promise<string | undefined> {
  try {
    return joinPath((await g.run('realpath', parentOf(path))).replace(/\n$/, ''), baseName(path));
  } catch {
    return undefined;
  }
}

/** A directory resolved inside the guest, or undefined when there is none. */
export async function resolveDir(g: Appliance, dir: string): Promise<string | undefined> {
  try {
    const real = (await g.run('realpath', dir)).replace(/\n$/, '');
    return (await isDir(g, real)) ? real : undefined;
  } catch {
    return undefined;
  }
}

/** The disk space a path holds, directory contents included (du: KiB), or undefined. */
export async function diskBytes(g: Appliance, path: string): Promise<number | undefined> {
  try {
    const kib = Number((await g.run('du', path)).trim());
    return Number.isFinite(kib) ? kib * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A name the appliance's reply could not carry exactly: guestfish's output is read as UTF-8, so
 * a name that is not comes back with U+FFFD and must not be acted on (it would name another file
 * or none).
 */
export const garbled = (path: string): boolean => path.includes('\uFFFD');
