/**
 * libguestfs' own virt-sparsify test scripts, taken at test time from Debian's source package of
 * guestfs-tools (never committed here), and a stand-in for the libguestfs test harness they
 * expect, so they run unchanged with `virt-sparsify` on PATH pointing at sparsify.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, it } from 'vitest';
import { CLI } from './cli.js';
import { REPO_ROOT } from './image.js';

const execFileAsync = promisify(execFile);

/** Where the source package is downloaded and the scripts extracted (gitignored). */
const CACHE_DIR = join(REPO_ROOT, '.cache', 'guestfs-tools');

/**
 * The `sparsify/` folder of guestfs-tools' source, downloaded with apt once and cached. scripts/setup
 * adds the deb-src line. Only the upstream tarball is needed: apt may fail on the Debian patch
 * tarball and still have fetched (and checked the hash of) the upstream one.
 */
export async function guestfsToolsSparsifyDir(): Promise<string> {
  const cached = await extractedDir();
  if (cached) return cached;
  const download = join(CACHE_DIR, 'download');
  await mkdir(download, { recursive: true });
  let aptError = '';
  try {
    await execFileAsync('apt-get', ['source', '--download-only', 'guestfs-tools'], { cwd: download, maxBuffer: 16 << 20 });
  } catch (err) {
    aptError = String((err as { stderr?: string }).stderr ?? err).trim();
  }
  const tarball = (await readdir(download)).find((f) => /^guestfs-tools_.*\.orig\.tar\.(gz|xz)$/.test(f));
  if (!tarball) {
    throw new Error(`cannot get Debian's guestfs-tools source package with apt-get source (run scripts/setup, which adds the deb-src line): ${aptError || 'no upstream tarball downloaded'}`);
  }
  const partial = await mkdtemp(join(CACHE_DIR, 'partial-'));
  await execFileAsync('tar', ['-xf', join(download, tarball), '-C', partial, '--wildcards', '*/sparsify/test-*.sh']);
  const [top] = await readdir(partial);
  await rename(join(partial, top!), join(CACHE_DIR, top!));
  await rm(partial, { recursive: true, force: true });
  return join(CACHE_DIR, top!, 'sparsify');
}

async function extractedDir(): Promise<string | undefined> {
  const entries = await readdir(CACHE_DIR).catch(() => [] as string[]);
  const top = entries.find((e) => /^guestfs-tools-\d/.test(e));
  return top && join(CACHE_DIR, top, 'sparsify');
}

/**
 * The harness of libguestfs' tests, only as much as these scripts use: newer releases run
 * `$TEST_FUNCTIONS` (a `source …/test-functions.sh` line with variable assignments), older ones
 * `source ../tests/functions.sh`; both give `skip_if_skipped`, which exits 77 when
 * SKIP_<SCRIPT_NAME> is set, as the real one does.
 */
const HARNESS = `# Stand-in for libguestfs' test-functions.sh (sparsify's tests; not libguestfs code).
unset CDPATH
export LANG=C
while [ $# -ge 1 ]; do eval "$1"; shift; done
skip_if_skipped () {
    local v
    if [ -n "$1" ]; then v="SKIP_$(basename $1 | tr a-z.- A-Z__)"; else v="SKIP_$(basename $0 | tr a-z.- A-Z__)"; fi
    if [ -n "\${!v}" ]; then echo "$(basename $0): test skipped because \\$$v is set"; exit 77; fi
}
`;

/**
 * The scripts run and the arguments each passes to virt-sparsify. Exit 77 (automake's "skipped",
 * the in-place script's answer to exit 3, "cannot discard") fails, like every other non-zero exit.
 */
const SPARSIFY_SCRIPTS = [
  { script: 'test-virt-sparsify.sh', call: '--debug-gc --format raw test-virt-sparsify-1.img --convert qcow2 test-virt-sparsify-2.img' },
  { script: 'test-virt-sparsify-in-place.sh', call: '--debug-gc --in-place --format raw test-virt-sparsify-in-place.img' },
] as const;

/** guestfsToolsSparsifyDir(), or undefined with a warning when it cannot be had outside CI (in CI it throws). */
async function sparsifyDirOrSkip(): Promise<string | undefined> {
  try {
    return await guestfsToolsSparsifyDir();
  } catch (err) {
    if (process.env.CI === 'true') throw err;
    console.warn(`skipping libguestfs' test scripts: ${(err as Error).message}`);
    return undefined;
  }
}

/** A working copy: the script unchanged in `top/sparsify/`, the harness, and a PATH directory. */
export interface ScriptRun {
  readonly dir: string;
  readonly env: Record<string, string>;
  /** Each line: the arguments one `virt-sparsify` call received. */
  readonly callLog: string;
}

/** Lays out a run of one script: copies it (byte for byte) and writes the harness and wrapper. */
export async function prepareScriptRun(sparsifyDir: string, script: string): Promise<ScriptRun> {
  const dir = await mkdtemp('/tmp/sparsify-libguestfs-');
  const top = join(dir, 'top');
  await mkdir(join(top, 'sparsify'), { recursive: true });
  await mkdir(join(top, 'tests'));
  await copyFile(join(sparsifyDir, script), join(top, 'sparsify', script));
  await writeFile(join(top, 'test-functions.sh'), HARNESS);
  await writeFile(join(top, 'tests', 'functions.sh'), HARNESS);
  const bin = join(dir, 'bin');
  await mkdir(bin);
  const callLog = join(dir, 'virt-sparsify.calls');
  const wrapper = join(bin, 'virt-sparsify');
  await writeFile(wrapper, `#!/bin/sh\necho "$*" >> '${callLog}'\nexec '${process.execPath}' '${CLI}' "$@"\n`);
  await chmod(wrapper, 0o755);
  const env = {
    ...(process.env as Record<string, string>),
    PATH: `${bin}:${process.env.PATH}`,
    VG: '',
    TEST_FUNCTIONS: `source ${top}/test-functions.sh abs_srcdir="${top}/sparsify" srcdir=. top_srcdir=.. abs_top_srcdir="${top}" abs_top_builddir="${top}"`,
    // As the other libguestfs-built images in this suite: no KVM or libvirt assumed.
    LIBGUESTFS_BACKEND: 'direct',
    LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg',
  };
  return { dir, env, callLog };
}

/**
 * One test per script in the current suite (`${script} passes${titleSuffix}`): each gets a fresh
 * working copy, removed after the suite, and `body` runs it and judges the result. The tests are
 * skipped when the scripts cannot be had outside CI.
 */
export function itRunsEachScript(titleSuffix: string, timeoutMs: number, body: (run: ScriptRun, script: string, call: string) => Promise<void>): void {
  let sparsifyDir: string | undefined;
  const runs: ScriptRun[] = [];
  beforeAll(async () => {
    sparsifyDir = await sparsifyDirOrSkip();
  });
  afterAll(async () => {
    for (const run of runs) await rm(run.dir, { recursive: true, force: true });
  });
  for (const { script, call } of SPARSIFY_SCRIPTS) {
    it(`${script} passes${titleSuffix}`, async (ctx) => {
      if (!sparsifyDir) return ctx.skip();
      const run = await prepareScriptRun(sparsifyDir, script);
      runs.push(run);
      await body(run, script, call);
    }, timeoutMs);
  }
}
