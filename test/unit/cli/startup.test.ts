/**
 * The CLI's start-up cost: commands that touch no disk must not load the modules that do (the
 * engines, qemu, libguestfs, the task tree, execa), since every run of the suite and every user
 * pays for each module read and compiled. Runs src/cli/main.ts through tsx with a loader hook
 * that records every module loaded.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../helpers/image.js';
import { EXIT } from '../../../src/errors.js';
import { VERSION } from '../../../src/version.js';

const execFileAsync = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'sparsify-startup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The modules `sparsify ARGS` loads (as file URLs), and what it printed. */
async function loadedBy(args: readonly string[]): Promise<{ loaded: string[]; stdout: string; exitCode: number }> {
  const log = join(dir, `load-${args.join('_').replace(/\W/g, '')}.log`);
  const argv = ['--import', 'tsx', '--import', join(REPO_ROOT, 'test', 'helpers', 'load-log.mjs'), join(REPO_ROOT, 'src', 'cli', 'main.ts'), ...args];
  const result = await execFileAsync(process.execPath, argv, { cwd: REPO_ROOT, env: { ...process.env, LOAD_LOG: log } }).then(
    (r) => ({ stdout: r.stdout, exitCode: 0 }),
    (e: { stdout: string; code: number }) => ({ stdout: e.stdout, exitCode: e.code }),
  );
  return { ...result, loaded: readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

/** The loaded modules that only work on disks needs. */
function diskWorkModules(loaded: readonly string[]): string[] {
  return loaded.filter((url) => /\/src\/(engines\/(?!ids\.ts)|qemu\/|nbd\/|copy\/|modes\/|libvirt\/)|\/node_modules\/(listr2|execa|xml2js|argon2|koffi|zstd-napi|tar)\//.test(url));
}

/** The loaded modules that only a batch, -d, --inspect, --ova or an Argon2 LUKS key slot needs. */
function occasionalModules(loaded: readonly string[]): string[] {
  return loaded.filter((url) => /\/src\/(libvirt|batch)\/|\/src\/inspect\/render\.ts|\/src\/cli\/(batch|inspect)\.ts|\/src\/export\/ovf\.ts|\/node_modules\/(xml2js|tar|argon2|picomatch)\//.test(url));
}

describe('sparsify start-up', () => {
  it('--version prints the version and loads no engine, qemu, copier, task tree or execa', async () => {
    const { loaded, stdout, exitCode } = await loadedBy(['--version']);
    expect(exitCode).toBe(0);
    expect(stdout).toContain(VERSION);
    expect(loaded.some((url) => url.endsWith('/src/cli/parse-options.ts'))).toBe(true);
    expect(diskWorkModules(loaded)).toEqual([]);
  });

  it('a refused option fails with exit code 1 and loads none of them either', async () => {
    const { loaded, exitCode } = await loadedBy(['--no-such-option', 'in.img', 'out.img']);
    expect(exitCode).toBe(EXIT.ERROR);
    expect(diskWorkModules(loaded)).toEqual([]);
  });

  it('a copy loads them (the checks above can see them), but no batch, libvirt, inspection, OVA or Argon2 code', async () => {
    const { loaded, exitCode } = await loadedBy([join(dir, 'missing.img'), join(dir, 'out.img')]);
    expect(exitCode).toBe(EXIT.ERROR);
    expect(diskWorkModules(loaded).some((url) => url.includes('/src/engines/registry.ts'))).toBe(true);
    expect(loaded.some((url) => url.endsWith('/src/fs/luks/kdf.ts'))).toBe(true);
    expect(occasionalModules(loaded)).toEqual([]);
  }, 60_000);
});
