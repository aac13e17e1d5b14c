/**
 * Runs the built CLI (dist/cli/sparsify.cjs, package.json "bin") as a user would, and checks that a run left nothing
 * behind under its own temporary directory: no loop device, mount, process or file.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './image.js';

const execFileAsync = promisify(execFile);

/** The command as installed (package.json "bin"), which sizes the thread pool and runs main.js; `npm test` builds it first (scripts/setup). */
export const CLI = join(REPO_ROOT, 'dist', 'cli', 'sparsify.cjs');

/** The longest one CLI run may take in a test (the slowest, --compress on 2 GiB, takes ~40 s). */
const CLI_TIMEOUT_MS = 100_000;

/** What one run of the CLI did. */
export interface CliResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A private TMPDIR for one run, so leftovers can be attributed to it. */
export function makeRunTmp(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'sparsify-it-'));
}

/** How long a timed-out run has to clean up after SIGTERM (as Ctrl-C would) before SIGKILL. */
const TERM_GRACE_MS = 15_000;

/**
 * Runs `sparsify ARGS` with TMPDIR set; never throws on a non-zero exit. `timeoutMs` (default
 * 100 s) plus 15 s of grace must stay below the calling test's own timeout. A run still going at
 * `timeoutMs` gets SIGTERM, so it stops its daemons and appliance as it would on Ctrl-C; SIGKILL
 * (which would leave them running) only if it has not ended 15 s later.
 */
export function runCli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
  return new Promise((resolve) => {
    let killed: string | undefined;
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        clearTimeout(term);
        clearTimeout(kill);
        const exitCode = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        if (killed) stderr += `\n[test] sparsify ${killed}`;
        resolve({ exitCode, stdout, stderr });
      },
    );
    // Stopped before vitest's own timeout, so a hang shows the run's output instead of nothing.
    let kill: NodeJS.Timeout | undefined;
    const term = setTimeout(() => {
      killed = `stopped with SIGTERM after ${timeoutMs} ms`;
      child.kill('SIGTERM');
      kill = setTimeout(() => {
        killed = `killed after ${timeoutMs + TERM_GRACE_MS} ms (SIGTERM did not end it)`;
        child.kill('SIGKILL');
      }, TERM_GRACE_MS);
    }, timeoutMs);
  });
}

/** Starts `sparsify ARGS` in the background (for Ctrl-C tests). */
export function spawnCli(args: readonly string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Waits for a child to exit and collects its output. */
export function waitForExit(child: ChildProcess): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += String(d)));
  child.stderr?.on('data', (d) => (stderr += String(d)));
  return new Promise((resolve) => child.on('close', (code) => resolve({ exitCode: code ?? -1, stdout, stderr })));
}

/** Loop devices whose backing shows as "(/)": they lost their FUSE file (a leak, of some run). */
export async function orphanLoops(): Promise<string[]> {
  const { stdout: loops } = await execFileAsync('losetup', ['-a']).catch(() => ({ stdout: '' }));
  return loops.split('\n').filter((line) => line.includes('(/)'));
}

/**
 * What is still attached, mounted, running or present under `dir` (a run's TMPDIR). `before`:
 * the {@link orphanLoops} seen before the run started, another run's leaks, not this one's.
 */
export async function leftoversUnder(dir: string, before: readonly string[] = []): Promise<string[]> {
  const left: string[] = [];
  const { stdout: loops } = await execFileAsync('losetup', ['-a']).catch(() => ({ stdout: '' }));
  // A loop device whose backing shows as "(/)" lost its FUSE file: always a leak.
  for (const line of loops.split('\n')) if (line.includes(dir) || (line.includes('(/)') && !before.includes(line))) left.push(`loop: ${line}`);
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of mounts.split('\n')) if (line.includes(dir)) left.push(`mount: ${line}`);
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dir) && Number(pid) !== process.pid) left.push(`process ${pid}: ${cmdline.replace(/\0/g, ' ')}`);
  }
  for (const name of await readdir(dir).catch(() => [] as string[])) left.push(`file: ${join(dir, name)}`);
  return left;
}

/** Waits until `predicate(output so far)` holds on the child's stdout, or fails after `ms`. */
export function waitForOutput(child: ChildProcess, predicate: (out: string) => boolean, ms = 120_000): Promise<void> {
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for output; got: ${out.slice(-500)}`)), ms);
    const check = (d: Buffer) => {
      out += String(d);
      if (predicate(out)) {
        clearTimeout(timer);
        child.stdout?.off('data', check);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    child.on('close', () => {
      clearTimeout(timer);
      if (!predicate(out)) reject(new Error(`exited before the expected output; got: ${out.slice(-500)}`));
    });
  });
}
