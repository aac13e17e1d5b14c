/**
 * One action of an operation, done (or, in a dry run, only looked at) on the guest's mounted
 * filesystems. Every path goes through guest-paths.ts, which says why none leaves the guest.
 */
import type { Appliance } from '../../engines/appliance/guestfish.js';
import { baseName, globMatches, isNormalPath, joinPath } from './glob.js';
import { ensureHostKeysAtBoot } from '../firstboot/ensure.js';
import { diskBytes, expandGlob, garbled, isFile, listNames, resolveDir, resolveParent } from './guest-paths.js';
import type { Action, Change } from './types.js';

/** What actions did, and what they left alone and why. */
export interface Outcome {
  readonly changes: Change[];
  readonly warnings: string[];
}

interface Doing {
  readonly g: Appliance;
  readonly dryRun: boolean;
  readonly out: Outcome;
}

/** Does one action. */
export async function runAction(g: Appliance, action: Action, dryRun: boolean, out: Outcome): Promise<void> {
  const d: Doing = { g, dryRun, out };
  switch (action.kind) {
    case 'remove':
    case 'remove-file':
      for (const path of await expandGlob(g, action.glob)) await remove(d, path, { onlyFile: action.kind === 'remove-file' });
      return;
    case 'empty-dir': {
      const dir = await resolveDir(g, action.dir);
      if (dir) for (const name of await listNames(g, 'ls0', dir)) await remove(d, joinPath(dir, name), { onlyFile: false, parentResolved: true });
      return;
    }
    case 'remove-files-below':
      for (const found of await expandGlob(g, action.dir)) await removeBelow(d, found, (name) => !(action.keep ?? []).includes(name));
      return;
    case 'remove-by-name':
      for (const root of action.roots) await removeBelow(d, root, (name) => action.names.some((glob) => globMatches(glob, name, { leadingDot: true })));
      return;
    case 'empty-file':
    case 'reset-file':
      return rewrite(d, action.path, action.kind === 'empty-file' ? undefined : action.content);
    case 'drop-lines':
      for (const path of await expandGlob(g, action.glob)) await dropLines(d, path, action.prefixes);
      return;
    case 'host-keys-at-boot': {
      const { changes, warnings } = await ensureHostKeysAtBoot(g, dryRun);
      out.changes.push(...changes);
      out.warnings.push(...warnings);
      return;
    }
  }
}

/** Removes one path: a regular file only (`onlyFile`), or anything, a directory with its contents. */
async function remove(d: Doing, path: string, how: { onlyFile: boolean; parentResolved?: boolean }): Promise<void> {
  if (garbled(path)) return void d.out.warnings.push(`${path}: left alone (its name is not UTF-8)`);
  const real = how.parentResolved ? path : await resolveParent(d.g, path);
  if (real !== undefined && !isNormalPath(real)) return void d.out.warnings.push(`${JSON.stringify(real)}: left alone (not a plain path)`);
  if (real === undefined || (how.onlyFile && !(await isFile(d.g, real)))) return;
  // Two globs of one operation can name one path (cron.log: /var/log/cron*, /var/log/*.log*);
  // a dry run, which removes nothing, would find it twice.
  if (d.out.changes.some((c) => c.path === real)) return;
  const bytes = await diskBytes(d.g, real);
  if (!d.dryRun) await d.g.run(how.onlyFile ? 'rm-f' : 'rm-rf', real);
  d.out.changes.push({ path: real, change: 'removed', ...(bytes === undefined ? {} : { bytes }) });
}

/** Removes the regular files below a directory whose name passes `wanted`; the directories stay. */
async function removeBelow(d: Doing, dir: string, wanted: (name: string) => boolean): Promise<void> {
  const real = await resolveDir(d.g, dir);
  if (!real) return;
  // find0 does not follow symlinks below `real`, so every parent it names is a real directory.
  // Its names are relative but start with '/' ("/x.deb"): joined as they come they would make
  // "dir//x.deb", which isNormalPath refuses.
  for (const found of await listNames(d.g, 'find0', real)) {
    const rel = found.replace(/^\/+/, '');
    if (wanted(baseName(rel))) await remove(d, joinPath(real, rel), { onlyFile: true, parentResolved: true });
  }
}

/** Empties a regular file (content undefined) or writes `content` over it, in place: owner, mode and SELinux label stay. */
async function rewrite(d: Doing, path: string, content: string | undefined): Promise<void> {
  const real = await resolveParent(d.g, path);
  if (real === undefined || !(await isFile(d.g, real))) return;
  if (content === undefined) {
    const bytes = await diskBytes(d.g, real);
    if (!d.dryRun) await d.g.run('truncate', real);
    d.out.changes.push({ path: real, change: 'emptied', ...(bytes === undefined ? {} : { bytes }) });
  } else {
    if (!d.dryRun) await d.g.run('write', real, content);
    d.out.changes.push({ path: real, change: 'reset' });
  }
}

/** Drops the lines starting with one of `prefixes` from a regular text file; a file without such lines is not written. */
async function dropLines(d: Doing, path: string, prefixes: readonly string[]): Promise<void> {
  const real = await resolveParent(d.g, path);
  if (real === undefined || !(await isFile(d.g, real))) return;
  const text = await d.g.run('read-lines', real);
  if (garbled(text)) return void d.out.warnings.push(`${real}: left alone (not UTF-8 text)`);
  // read-lines gives one line per output line; the output's last newline ends the last line.
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  const dropped = lines.filter((l) => prefixes.some((p) => l.startsWith(p)));
  if (dropped.length === 0) return;
  if (!d.dryRun) await d.g.run('write', real, `${lines.filter((l) => !dropped.includes(l)).join('\n')}\n`);
  d.out.changes.push({ path: real, change: 'edited', detail: `dropped ${dropped.join(', ')}` });
}
