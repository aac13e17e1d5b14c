/**
 * How to run libguestfs on this host: found once per process, checked once per host.
 *
 * - Found: `guestfish version : get-hv` names the library's version and its hypervisor without
 *   launching anything (about 0.1 s). No guestfish: the appliance is unavailable, and the reason
 *   names the package to install.
 * - KVM: libguestfs' direct backend asks qemu for `accel=kvm:tcg` with `-cpu host`. Where
 *   /dev/kvm opens but qemu then aborts (here: "failed to set MSR 0x10a", an assertion), every
 *   launch fails instead of falling back. A stopped qemu with the same accelerator and CPU model
 *   (`-S`, quit at once over QMP) shows this in about 0.2 s; when it fails, the appliance runs
 *   under TCG (`LIBGUESTFS_BACKEND_SETTINGS=force_tcg`) and the run says so once.
 * - Checked: the first time on a host (no cached verdict for this libguestfs, kernel, qemu, uid
 *   and settings) one appliance is launched over a scratch disk, as libguestfs-test-tool does
 *   but without its report; a success is written to `CACHEDIR/.guestfs-UID/sparsify-check.json`,
 *   beside libguestfs' own appliance cache, and later runs launch nothing here. The file keeps
 *   the last CACHED_VERDICTS keys, so runs with different LIBGUESTFS_* settings do not take
 *   turns re-checking. A failure is not
 *   cached (it may be the load of the moment): the next run checks again.
 * - The cache directory is LIBGUESTFS_CACHEDIR, or /var/tmp. libguestfs itself would take $TMPDIR
 *   before /var/tmp, and a user who points TMPDIR (or --tmp) at a work or build directory then
 *   finds `.guestfs-UID` in what they ship: the environment given to every libguestfs process
 *   sets LIBGUESTFS_CACHEDIR explicitly.
 * - The user's own LIBGUESTFS_* settings are kept: a backend, backend settings that already say
 *   force_tcg or force_kvm (then no KVM probe), a hypervisor (LIBGUESTFS_HV), a cache directory.
 */
import { access, constants, lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeContext, type RunContext } from '../../context.js';
import { cancelledError, isSparsifyError } from '../../errors.js';
import { makeWorkDir } from '../../host/work-dir.js';
import type { Options } from 'execa';
import { runTool, spawnTool, stderrTail } from '../../util/run.js';
import { launchAppliance } from './guestfish.js';

/** How to run libguestfs on this host. */
export interface ApplianceHost {
  /** Environment for the libguestfs process (LIBGUESTFS_BACKEND, _BACKEND_SETTINGS=force_tcg when KVM is unusable, LIBGUESTFS_CACHEDIR …). */
  readonly env: Readonly<Record<string, string>>;
  /** Notices to print once per run (e.g. that KVM is unusable and TCG is used). */
  readonly notices: readonly string[];
  /** The accelerator the appliance uses: 'kvm', 'tcg', or whatever the user's settings choose. */
  readonly accel: Accel;
  /** How long the check launch took (ms), when this process ran it; absent when the verdict was cached. */
  readonly checkLaunchMs?: number;
}

/** Usable here (and how), or the one-line reason why not. */
export type ApplianceAvailability =
  | { readonly available: true; readonly host: ApplianceHost }
  | { readonly available: false; readonly reason: string }; // one line, names the package to install

/** 'user': the user's backend settings choose (force_tcg or force_kvm already given). */
export type Accel = 'kvm' | 'tcg' | 'user';

/** What the verdict depends on: a change in any of these means checking again. */
export interface HostFactsKey {
  readonly libguestfsVersion: string;
  readonly qemuVersion: string;
  readonly kernel: string;
  readonly uid: number;
  /** Whether this user may open /dev/kvm read-write (group membership changes). */
  readonly kvmAccess: boolean;
  /** The user's LIBGUESTFS_* variables that change how the appliance launches. */
  readonly settings: Readonly<Record<string, string>>;
}

/** A successful check, as cached. */
export interface CachedVerdict {
  readonly key: string;
  readonly accel: Accel;
  /** Why KVM is not used (qemu's own words), when accel is 'tcg' for that reason. */
  readonly kvmProblem?: string;
  readonly launchMs: number;
}

/** libguestfs' default cache directory when neither LIBGUESTFS_CACHEDIR nor TMPDIR is set. */
export const DEFAULT_CACHE_DIR = '/var/tmp';
/** The verdict's file name inside libguestfs' own `.guestfs-UID` cache directory. */
const VERDICT_FILE = 'sparsify-check.json';
/** A TCG launch takes 15-60 s on a loaded 2-core host; the check gives up after this. */
const CHECK_TIMEOUT_MS = 600_000;
/** The user's variables that change how an appliance launches, and so the cache key. */
const KEY_VARIABLES = ['LIBGUESTFS_BACKEND', 'LIBGUESTFS_ATTACH_METHOD', 'LIBGUESTFS_BACKEND_SETTINGS', 'LIBGUESTFS_HV', 'LIBGUESTFS_PATH', 'LIBGUESTFS_MEMSIZE'];
/**
 * The appliance's memory in MiB (libguestfs' set_memsize), unless the user's LIBGUESTFS_MEMSIZE
 * says otherwise. libguestfs 1.48 gives 1280 by default and refuses less than 256. Under TCG
 * the appliance's qemu holds its guest RAM as touched plus TCG's translated code (up to 1 GiB,
 * which libguestfs gives no way to bound), so the memory given caps only the first part; see the
 * README's benchmark section for what each size measured on the dirty 16 GiB image.
 */
export const APPLIANCE_MEMSIZE_MIB = 512;

let memo: Promise<ApplianceAvailability> | undefined;

/**
 * Whether libguestfs is usable here, and how. Memoised per process. Launches one appliance
 * (tens of seconds under TCG) only when this host has no cached verdict; rejects only with
 * CANCELLED (the next call then starts over).
 */
export function findAppliance(ctx: RunContext = makeContext()): Promise<ApplianceAvailability> {
  memo ??= checkHost(ctx, process.env).catch((err: unknown) => {
    memo = undefined;
    throw err;
  });
  return memo;
}

/** The one line when guestfish is not on PATH. */
export function missingLibguestfsReason(): string {
  return 'libguestfs is not installed (no guestfish on PATH): install the Debian package libguestfs-tools (or guestfish)';
}

/** The check itself, without the memo (for tests: `env` stands for process.env). */
export async function checkHost(ctx: RunContext, env: NodeJS.ProcessEnv): Promise<ApplianceAvailability> {
  let found: { version: string; hv: string };
  try {
    found = parseFound((await runTool(ctx, 'guestfish', ['version', ':', 'get-hv'], { env: { ...env }, timeoutMs: 60_000 })).stdout);
  } catch (err) {
    if (isSparsifyError(err, 'TOOL_MISSING')) return { available: false, reason: missingLibguestfsReason() };
    if (isSparsifyError(err, 'CANCELLED')) throw err;
    return { available: false, reason: `libguestfs does not work here: ${oneLine(err)}` };
  }
  const cacheDir = env['LIBGUESTFS_CACHEDIR'] || DEFAULT_CACHE_DIR;
  const uid = process.geteuid?.() ?? 0;
  const key = cacheKey({
    libguestfsVersion: found.version,
    qemuVersion: await qemuVersion(ctx, found.hv),
    kernel: release(),
    uid,
    kvmAccess: await access('/dev/kvm', constants.R_OK | constants.W_OK).then(() => true, () => false),
    settings: pickSettings(withMemsize(env)),
  });
  const verdictPath = join(cacheDir, `.guestfs-${uid}`, VERDICT_FILE);
  const cached = parseVerdict(await readFile(verdictPath, 'utf8').catch(() => ''), key);
  if (cached) return { available: true, host: hostFrom(env, cacheDir, cached) };
  const accel = await chooseAccel(ctx, env, found.hv);
  const checked = await checkLaunch(ctx, env, cacheDir, accel.accel);
  if (!checked.ok) return { available: false, reason: checked.reason };
  const verdict: CachedVerdict = { key, ...accel, launchMs: checked.launchMs };
  await writeVerdict(ctx, join(cacheDir, `.guestfs-${uid}`), verdict, uid);
  return { available: true, host: { ...hostFrom(env, cacheDir, verdict), checkLaunchMs: checked.launchMs } };
}

/** Decodes `guestfish version : get-hv`: "major: 1\nminor: 48\nrelease: 6\nextra: \n/usr/bin/qemu…". */
export function parseFound(stdout: string): { version: string; hv: string } {
  const field = (name: string) => new RegExp(`^${name}: (\\d+)$`, 'm').exec(stdout)?.[1];
  const [major, minor, rel] = [field('major'), field('minor'), field('release')];
  const hv = stdout.trim().split('\n').at(-1) ?? '';
  if (major === undefined || minor === undefined || rel === undefined || !hv.startsWith('/')) {
    throw new Error(`unexpected output of guestfish version: ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  return { version: `${major}.${minor}.${rel}`, hv };
}

/** The cache key: one string that differs whenever a fact the verdict rests on does. */
export function cacheKey(facts: HostFactsKey): string {
  const settings = Object.entries(facts.settings)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
  return [`libguestfs ${facts.libguestfsVersion}`, facts.qemuVersion, `kernel ${facts.kernel}`, `uid ${facts.uid}`, `kvm ${facts.kvmAccess ? 'rw' : 'no'}`, ...settings].join('; ');
}

/** How many verdicts the cache file keeps (one per key: settings, versions, uid), newest first. */
export const CACHED_VERDICTS = 8;

/** The cached verdicts in `text`, newest first: none when it is missing, damaged or not ours. Reads the one-verdict file of earlier versions too. */
export function parseVerdicts(text: string): CachedVerdict[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return [];
  }
  const list = (value as { verdicts?: unknown } | null)?.verdicts;
  const entries: unknown[] = Array.isArray(list) ? list : [value];
  return entries.flatMap((entry) => {
    const verdict = verdictOf(entry);
    return verdict ? [verdict] : [];
  });
}

/** A cached verdict for `key`, or undefined (none, another key, or not one of ours). */
export function parseVerdict(text: string, key: string): CachedVerdict | undefined {
  return parseVerdicts(text).find((v) => v.key === key);
}

/** The file's text with `verdict` first, its key's earlier verdict and the oldest past CACHED_VERDICTS dropped. */
export function withVerdict(text: string, verdict: CachedVerdict): string {
  const verdicts = [verdict, ...parseVerdicts(text).filter((v) => v.key !== verdict.key)].slice(0, CACHED_VERDICTS);
  return `${JSON.stringify({ verdicts })}\n`;
}

function verdictOf(value: unknown): CachedVerdict | undefined {
  const v = (value ?? {}) as Partial<Record<keyof CachedVerdict, unknown>>;
  if (typeof v.key !== 'string' || !(v.accel === 'kvm' || v.accel === 'tcg' || v.accel === 'user')) return undefined;
  if (typeof v.launchMs !== 'number' || !(v.kvmProblem === undefined || typeof v.kvmProblem === 'string')) return undefined;
  return { key: v.key, accel: v.accel, launchMs: v.launchMs, ...(typeof v.kvmProblem === 'string' ? { kvmProblem: v.kvmProblem } : {}) };
}

/** The user's LIBGUESTFS_* variables that change a launch (the key, and kept in the env). */
function pickSettings(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(KEY_VARIABLES.flatMap((k) => (env[k] ? [[k, env[k]]] : [])));
}

/** The environment with the appliance's memory set, unless the user set it. */
function withMemsize(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return env['LIBGUESTFS_MEMSIZE'] ? env : { ...env, LIBGUESTFS_MEMSIZE: String(APPLIANCE_MEMSIZE_MIB) };
}

/** Whether the user's backend settings already choose the accelerator. */
function userChoosesAccel(env: NodeJS.ProcessEnv): boolean {
  return (env['LIBGUESTFS_BACKEND_SETTINGS'] ?? '').split(':').some((s) => s === 'force_tcg' || s === 'force_kvm');
}

/**
 * The environment of every libguestfs process: the user's LIBGUESTFS_* kept, the cache
 * directory set explicitly, the direct backend unless the user chose one, force_tcg added when
 * KVM is unusable, the appliance's memory (APPLIANCE_MEMSIZE_MIB) unless the user chose it.
 */
export function buildEnv(env: NodeJS.ProcessEnv, cacheDir: string, accel: Accel): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(withMemsize(env))) if (k.startsWith('LIBGUESTFS_') && v !== undefined) out[k] = v;
  out['LIBGUESTFS_CACHEDIR'] = cacheDir;
  if (!env['LIBGUESTFS_BACKEND'] && !env['LIBGUESTFS_ATTACH_METHOD']) out['LIBGUESTFS_BACKEND'] = 'direct';
  if (accel === 'tcg') {
    const settings = (env['LIBGUESTFS_BACKEND_SETTINGS'] ?? '').split(':').filter((s) => s !== '');
    out['LIBGUESTFS_BACKEND_SETTINGS'] = [...settings, 'force_tcg'].join(':');
  }
  return out;
}

/** The notice a run prints once when KVM is not used for lack of it. */
export function tcgNotice(kvmProblem: string): string {
  return `KVM is not usable here (${kvmProblem}): the libguestfs appliance runs under TCG emulation, which is slower`;
}

function hostFrom(env: NodeJS.ProcessEnv, cacheDir: string, verdict: Pick<CachedVerdict, 'accel' | 'kvmProblem'>): ApplianceHost {
  const notices = verdict.accel === 'tcg' && verdict.kvmProblem ? [tcgNotice(verdict.kvmProblem)] : [];
  return { env: buildEnv(env, cacheDir, verdict.accel), notices, accel: verdict.accel };
}

async function qemuVersion(ctx: RunContext, hv: string): Promise<string> {
  try {
    return (await runTool(ctx, hv, ['--version'], { timeoutMs: 30_000 })).stdout.split('\n')[0]?.trim() ?? hv;
  } catch (err) {
    if (isSparsifyError(err, 'CANCELLED')) throw err;
    // libguestfs will say why at launch; the key only needs to change when qemu does.
    return `${hv} (no version: ${oneLine(err)})`;
  }
}

/** KVM, TCG (with qemu's reason), or the user's choice. */
async function chooseAccel(ctx: RunContext, env: NodeJS.ProcessEnv, hv: string): Promise<Pick<CachedVerdict, 'accel' | 'kvmProblem'>> {
  if (userChoosesAccel(env)) return { accel: 'user' };
  const problem = await probeKvm(ctx, hv);
  return problem === undefined ? { accel: 'kvm' } : { accel: 'tcg', kvmProblem: problem };
}

/**
 * Starts qemu stopped (-S) with the accelerator and CPU model libguestfs asks for, and quits it
 * over QMP: undefined when it came up, else qemu's first line of complaint.
 */
async function probeKvm(ctx: RunContext, hv: string): Promise<string | undefined> {
  const args = ['-no-user-config', '-nodefaults', '-display', 'none', '-machine', 'accel=kvm', '-cpu', 'host', '-S', '-qmp', 'stdio'];
  const qmp = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n';
  const result = await spawnTool(ctx, hv, args, { input: qmp, stdin: undefined, timeout: 30_000 } as Options);
  if (result.isCanceled || ctx.signal.aborted) throw cancelledError(ctx.signal);
  if (result.exitCode === 0) return undefined;
  const how = result.signal ? `killed by ${result.signal}` : result.timedOut ? 'no answer within 30 s' : `exit code ${result.exitCode ?? '?'}`;
  return kvmProblemOf(String(result.stderr ?? ''), how);
}

/**
 * qemu's own reason from a failed KVM probe, in one line: its first complaint without the
 * program name ("failed to set MSR 0x10a to 0x69"), else how it ended.
 */
export function kvmProblemOf(stderr: string, how: string): string {
  const lines = stderr.split('\n').map((l) => l.replace(/^\S*qemu[^:]*: /, '').replace(/^error: /, '').trim());
  return lines.find((l) => l !== '' && !l.startsWith('warning:')) ?? `qemu with KVM: ${how}`;
}

/** Launches one appliance over a small scratch disk and runs one command in it. */
async function checkLaunch(
  ctx: RunContext,
  env: NodeJS.ProcessEnv,
  cacheDir: string,
  accel: Accel,
): Promise<{ ok: true; launchMs: number } | { ok: false; reason: string }> {
  const workDir = await makeWorkDir(tmpdir());
  const timeout = AbortSignal.timeout(CHECK_TIMEOUT_MS);
  const checkCtx = { ...ctx, signal: AbortSignal.any([ctx.signal, timeout]) };
  const started = Date.now();
  try {
    const host: ApplianceHost = { env: buildEnv(env, cacheDir, accel), notices: [], accel };
    await using appliance = await launchAppliance(checkCtx, { host, drives: [], scratchBytes: 1 << 20, workDir });
    const launchMs = Date.now() - started;
    await appliance.run('ping-daemon');
    return { ok: true, launchMs };
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    const why = timeout.aborted ? `no appliance after ${CHECK_TIMEOUT_MS / 1000} s` : oneLine(err);
    return { ok: false, reason: `libguestfs cannot launch its appliance here (${why}); run libguestfs-test-tool to see why` };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * Writes the verdict beside libguestfs' appliance cache, only into a directory this user owns
 * that nobody else may write (the cache directory is often the world-writable /var/tmp).
 */
async function writeVerdict(ctx: RunContext, dir: string, verdict: CachedVerdict, uid: number): Promise<void> {
  try {
    await mkdir(dir, { mode: 0o755 }).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    });
    const st = await lstat(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) throw new Error(`${dir} is not a directory of uid ${uid} that only it may write`);
    const tmp = join(dir, `.${VERDICT_FILE}.${process.pid}`);
    const earlier = await readFile(join(dir, VERDICT_FILE), 'utf8').catch(() => '');
    await writeFile(tmp, withVerdict(earlier, verdict), { mode: 0o644 });
    await rename(tmp, join(dir, VERDICT_FILE));
  } catch (err) {
    ctx.log.debug(`the appliance check is not cached: ${oneLine(err)}`);
  }
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return stderrTail(text, 1);
}
