/**
 * Fault injection against the built CLI: a seeded random source, a run whose stdout lines are
 * timed (so a fault can land at a chosen point of a phase), the debris a run can leave (found
 * first, then removed so that the next case starts clean), and the tally the suite prints.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { CLI, leftoversUnder, makeRunTmp } from './cli.js';
import { REPO_ROOT } from './image.js';

const execFileAsync = promisify(execFile);

/** A run that has not ended this long after its fault is a hang: it is killed and reported. */
const HANG_MS = 90_000;

/** $SPARSIFY_FAULT_SEED when set (to replay a schedule), else a fresh one; the suite prints it. */
export function faultSeed(): number {
  const env = process.env.SPARSIFY_FAULT_SEED;
  if (env === undefined || env === '') return randomInt(2 ** 31);
  const seed = Number(env);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`SPARSIFY_FAULT_SEED must be a whole number, not ${env}`);
  return seed;
}

/** How a run ended. `signal` is set when the process itself died of one (SIGKILL). */
export interface RunEnd {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The run did not end within HANG_MS of being waited for, and was killed. */
  readonly hung: boolean;
}

/**
 * `sparsify ARGS` in its own process group (so a Ctrl-C can reach the group, as a terminal
 * sends it), recording when each stdout line arrived.
 */
export class TimedRun {
  readonly child: ChildProcess;
  private readonly startedMs = performance.now();
  private readonly lines: { atMs: number; text: string }[] = [];
  private readonly waiters: (() => void)[] = [];
  private stdout = '';
  private stderr = '';
  private readonly closed: Promise<{ code: number | null; signal: string | null }>;

  constructor(args: readonly string[], env: Record<string, string>) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let pending = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      this.stdout += String(d);
      pending += String(d);
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const text of parts) this.lines.push({ atMs: performance.now() - this.startedMs, text });
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += String(d)));
    this.closed = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        for (const wake of this.waiters.splice(0)) wake();
        resolve({ code, signal });
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Milliseconds since the start at which a line matching `re` arrived, or undefined. */
  lineAt(re: RegExp): number | undefined {
    return this.lines.find((l) => re.test(l.text))?.atMs;
  }

  /** Waits for a stdout line matching `re`; undefined when the run ended without one. */
  async waitForLine(re: RegExp, ms = 60_000): Promise<number | undefined> {
    const deadline = performance.now() + ms;
    for (;;) {
      const at = this.lineAt(re);
      if (at !== undefined || !this.running || performance.now() > deadline) return at;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }

  /** Sends `signal` to the run (`group`: to its whole process group, as Ctrl-C in a terminal). */
  kill(signal: NodeJS.Signals, group = false): void {
    if (!this.running) return;
    try {
      if (group) process.kill(-this.child.pid!, signal);
      else this.child.kill(signal);
    } catch {
      // Already gone between the check and the kill.
    }
  }

  /** Waits for the end; a run still going after HANG_MS is killed (with its group) and marked hung. */
  async end(): Promise<RunEnd> {
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      this.kill('SIGKILL', true);
    }, HANG_MS);
    const { code, signal } = await this.closed;
    clearTimeout(timer);
    return { exitCode: code, signal, stdout: this.stdout, stderr: this.stderr, hung };
  }
}

/** Runs `sparsify ARGS` to the end. */
export function runToEnd(args: readonly string[], env: Record<string, string>): Promise<RunEnd> {
  return new TimedRun(args, env).end();
}

/** A case's private directories: `work` is the run's TMPDIR, `out` holds its output. */
export interface CaseDirs {
  readonly root: string;
  readonly work: string;
  readonly out: string;
}

export async function makeCaseDirs(): Promise<CaseDirs> {
  const root = await makeRunTmp();
  const dirs = { root, work: join(root, 'work'), out: join(root, 'out') };
  await mkdir(dirs.work);
  await mkdir(dirs.out);
  return dirs;
}

/**
 * What the runs of a case left: every process, loop device and mount that names the case's
 * directory (cli.ts leftoversUnder), and every file in its TMPDIR and output directory. The
 * tmpfs mounts the case itself made (`ownMounts`) are not debris.
 */
export async function leftoversOf(dirs: CaseDirs, ownMounts: readonly string[] = [], keep: readonly string[] = []): Promise<string[]> {
  const own = new Set(ownMounts);
  const kept = new Set(keep);
  const found = (await leftoversUnder(dirs.root)).filter((line) => {
    if (line.startsWith('file: ')) return false;
    if (line.startsWith('mount: ')) return !own.has(line.split(' ')[5] ?? '');
    return true;
  });
  for (const dir of [dirs.work, dirs.out]) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!kept.has(join(dir, name))) found.push(`file: ${join(dir, name)}`);
    }
  }
  return found;
}

/**
 * Removes whatever a case left (after it was recorded), so that one product bug does not make
 * every later case fail: unmounts under the case directory (deepest first), detaches the loop
 * devices those mounts used or that name the directory, kills the processes that name it
 * (daemons our own runs started), then deletes the directory.
 */
export async function scrub(root: string): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts = mountinfo
    .split('\n')
    .filter((l) => l.includes(root))
    .map((l) => ({ point: l.split(' ')[4]!, source: l.split(' - ')[1]?.split(' ')[1] ?? '' }))
    .sort((a, b) => b.point.length - a.point.length);
  const loops = new Set(mounts.map((m) => m.source).filter((s) => s.startsWith('/dev/loop')));
  for (const m of mounts) await execFileAsync('umount', ['-l', m.point]).catch(() => undefined);
  const { stdout } = await execFileAsync('losetup', ['-a']).catch(() => ({ stdout: '' }));
  for (const line of stdout.split('\n')) if (line.includes(root)) loops.add(line.split(':')[0]!);
  for (const loop of loops) await execFileAsync('losetup', ['-d', loop]).catch(() => undefined);
  for (const { pid } of await processesNaming(root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  await rm(root, { recursive: true, force: true }).catch(() => undefined);
}

/** Processes (not this one) whose command line names `text`. */
export async function processesNaming(text: string): Promise<{ pid: number; argv: string[] }[]> {
  const found: { pid: number; argv: string[] }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(text)) found.push({ pid: Number(entry), argv: cmdline.split('\0').filter(Boolean) });
  }
  return found;
}

/** What a qemu-storage-daemon of the run serves: the input, the output (a .partial) or the overlay. */
export type DaemonRole = 'input' | 'output' | 'overlay';

/**
 * The first qemu-storage-daemon of the run serving `role`, waited for while the run goes (it may
 * start a little after the phase opens); their pidfiles and sockets live in the run's TMPDIR.
 */
export async function findDaemon(run: TimedRun, work: string, role: DaemonRole, ms = 10_000): Promise<number | undefined> {
  const deadline = performance.now() + ms;
  while (run.running && performance.now() < deadline) {
    for (const { pid, argv } of await processesNaming(work)) {
      if (!argv[0]?.endsWith('qemu-storage-daemon')) continue;
      const file = argv.map((a) => /"driver":"file".*"filename":"([^"]+)"/.exec(a)?.[1]).find(Boolean) ?? '';
      const served: DaemonRole = file.endsWith('.partial') ? 'output' : file.endsWith('overlay.qcow2') ? 'overlay' : 'input';
      if (served === role) return pid;
    }
    await sleep(10);
  }
  return undefined;
}

/** Mounts a tmpfs of `sizeBytes` on `dir` (read-only when asked: chmod does not stop root). */
export async function mountTmpfs(dir: string, sizeBytes: number, readOnly = false): Promise<void> {
  await mkdir(dir, { recursive: true });
  await execFileAsync('mount', ['-t', 'tmpfs', '-o', `${readOnly ? 'ro,' : ''}size=${sizeBytes}`, 'tmpfs', dir]);
}

/** Takes every free byte of the filesystem holding `dir` with one file (written: tmpfs refuses a large fallocate), and returns its path. */
export async function fillUp(dir: string): Promise<string> {
  const filler = join(dir, 'filler');
  const fh = await open(filler, 'w');
  try {
    for (const chunkBytes of [1 << 20, 4096]) {
      const chunk = Buffer.alloc(chunkBytes, 0xa5);
      for (;;) {
        try {
          await fh.write(chunk);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    await fh.close();
  }
  return filler;
}

/** The `sparsify: error:` lines of a run's stderr. */
export function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'));
}

/** Signs of a crash rather than a handled error. */
export const CRASH_TEXT = /Unhandled|internal error|^\s+at .+:\d+:\d+\)?$/m;

/** One case's outcome as the tally counts it. */
export interface CaseRecord {
  readonly name: string;
  /** The fault really happened (a daemon was there to kill, the run was still going, ...). */
  readonly injected: boolean;
  /** Every expectation held (exit code, message, input, output, leftovers). */
  readonly asExpected: boolean;
  /** Whether this case checks the input (an input the case itself changes is not counted). */
  readonly inputChecked: boolean;
  readonly inputUnchanged: boolean;
  readonly leftovers: readonly string[];
  readonly problems: readonly string[];
}

/** Counts the cases and writes the summary line to .cache/faults/summary.txt (and every case to cases.json). */
export class FaultTally {
  private readonly records: CaseRecord[] = [];

  constructor(private readonly seed: number) {}

  add(record: CaseRecord): void {
    this.records.push(record);
  }

  summary(): string {
    const r = this.records;
    const injected = r.filter((c) => c.injected).length;
    const expected = r.filter((c) => c.asExpected).length;
    const checked = r.filter((c) => c.inputChecked);
    const unchanged = checked.filter((c) => c.inputUnchanged).length;
    const leftovers = r.reduce((n, c) => n + c.leftovers.length, 0);
    const dirty = r.filter((c) => c.leftovers.length > 0).length;
    return (
      `faults (seed ${this.seed}): ${injected} injected in ${r.length} cases, ${expected} ended as expected, ` +
      `inputs unchanged ${unchanged}/${checked.length}, leftovers ${leftovers} (in ${dirty} cases)`
    );
  }

  async write(): Promise<string> {
    const dir = join(REPO_ROOT, '.cache', 'faults');
    await mkdir(dir, { recursive: true });
    const line = this.summary();
    await writeFile(join(dir, 'summary.txt'), `${line}\n`);
    await writeFile(join(dir, 'cases.json'), `${JSON.stringify({ seed: this.seed, cases: this.records }, null, 2)}\n`);
    return line;
  }
}

/** Collects what went wrong in one case, so the tally sees every case and a failure lists all its problems. */
export class CaseCheck {
  readonly problems: string[] = [];
  injected = true;
  inputChecked = false;
  inputUnchanged = true;
  leftovers: string[] = [];

  constructor(readonly name: string) {}

  that(ok: boolean, problem: string): void {
    if (!ok) this.problems.push(problem);
  }

  /** Exit 1 with exactly one `sparsify: error:` line matching `message`, and no crash. */
  failed(end: RunEnd, message: RegExp, label = 'run'): void {
    const errors = errorLines(end.stderr);
    const said = `exit ${end.exitCode ?? end.signal}${end.hung ? ' (hung)' : ''}, stderr: ${end.stderr.trim().slice(-600)}`;
    this.that(end.exitCode === 1, `${label}: expected exit 1; got ${said}`);
    this.that(errors.length === 1, `${label}: expected one "sparsify: error:" line; got ${errors.length}: ${errors.join(' / ')}`);
    this.that(errors.every((l) => message.test(l)), `${label}: error line does not match ${message}: ${errors.join(' / ')}`);
    this.that(!CRASH_TEXT.test(end.stderr), `${label}: a crash, not a handled error: ${end.stderr.trim().slice(-600)}`);
  }

  /** Exit 0 and no error line. */
  succeeded(end: RunEnd, label = 'run'): void {
    this.that(end.exitCode === 0, `${label}: expected exit 0; got exit ${end.exitCode ?? end.signal}${end.hung ? ' (hung)' : ''}: ${end.stderr.trim().slice(-600)}`);
    this.that(errorLines(end.stderr).length === 0 && !CRASH_TEXT.test(end.stderr), `${label}: error output: ${end.stderr.trim().slice(-600)}`);
  }

  input(unchanged: boolean, detail: string): void {
    this.inputChecked = true;
    this.inputUnchanged &&= unchanged;
    this.that(unchanged, `input changed: ${detail}`);
  }

  found(leftovers: readonly string[], label = 'leftovers'): void {
    this.leftovers.push(...leftovers);
    this.that(leftovers.length === 0, `${label}: ${leftovers.join('; ')}`);
  }

  record(): CaseRecord {
    return {
      name: this.name,
      injected: this.injected,
      asExpected: this.injected && this.problems.length === 0,
      inputChecked: this.inputChecked,
      inputUnchanged: this.inputChecked && this.inputUnchanged,
      leftovers: this.leftovers,
      problems: this.problems,
    };
  }
}
