import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { SparsifyError } from '../errors.js';
import { packageOf } from '../util/tools.js';

/** Programs every run needs; each engine names its own (Engine.tools). */
export const BASE_TOOLS = ['qemu-img', 'qemu-storage-daemon', 'setpriv'] as const;

/** Finds a program on PATH (and the sbin directories root has), or undefined. */
export async function findTool(tool: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, tool);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Checks, before any disk is touched, that the needed programs exist; names the package to install. */
export async function preflight(tools: readonly string[]): Promise<void> {
  const missing: string[] = [];
  for (const tool of tools) if (!(await findTool(tool))) missing.push(tool);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map(packageOf))];
  throw new SparsifyError('TOOL_MISSING', `${missing.join(', ')} not installed`, {
    hint: `install the Debian package${packages.length > 1 ? 's' : ''} ${packages.join(' ')} (or run scripts/setup)`,
  });
}

/** Whether this process may use loop devices and mounts. */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}
