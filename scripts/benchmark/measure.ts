/**
 * Runs one command and measures it: wall time, CPU time (user+sys of it and every descendant it
 * waited for, from /usr/bin/time's rusage), peak RSS of its process tree, peak temp space; and
 * times the `sync` after it, which writes back what it left dirty.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, lstatSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Measurement {
  readonly exitCode: number;
  readonly wallSeconds: number;
  /** user + sys of the whole tree (rusage of the command and the children it reaped). */
  readonly cpuSeconds: number;
  /** The largest single process (rusage maxrss). */
  readonly maxRssBytes: number;
  /**
   * Peak of the RSS summed over the process tree, sampled every SAMPLE_MS; never below
   * maxRssBytes (a sample can miss a short peak).
   */
  readonly treeRssBytes: number;
  /** Peak allocated bytes under the run's TMPDIR. */
  readonly tmpPeakBytes: number;
}

const SAMPLE_MS = 200;
const PAGE_BYTES = 4096;

/** The process currently measured, so that an interrupt can stop it and its children. */
let current: number | undefined;

/** pid → [ppid, rss bytes] for every process, from /proc/PID/stat (proc(5)). */
function readProcTable(): Map<number, [number, number]> {
  const table = new Map<number, [number, number]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try { stat = readFileSync(`/proc/${name}/stat`, 'utf8'); } catch { continue; }
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    table.set(Number(name), [Number(fields[1]), Number(fields[21]) * PAGE_BYTES]);
  }
  return table;
}

/** The pids strictly below root. */
export function descendants(root: number, table = readProcTable()): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, [ppid]] of table) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) { found.push(child); queue.push(child); }
  }
  return found;
}

function treeRss(root: number): number {
  const table = readProcTable();
  return descendants(root, table).reduce((sum, pid) => sum + (table.get(pid)?.[1] ?? 0), 0);
}

function allocatedUnder(dir: string): number {
  let sum = 0;
  let names: string[];
  try { names = readdirSync(dir); } catch { return 0; }
  for (const name of names) {
    try {
      const st = lstatSync(join(dir, name));
      sum += st.isDirectory() ? allocatedUnder(join(dir, name)) : st.blocks * 512;
    } catch { /* removed while we looked */ }
  }
  return sum;
}

/**
 * Runs argv with stdin from /dev/null, stdout and stderr to logFile, TMPDIR=tmpDir, under
 * /usr/bin/time. The time process itself is not counted in the tree RSS.
 */
export async function measure(argv: readonly string[], env: Readonly<Record<string, string>>, tmpDir: string, logFile: string): Promise<Measurement> {
  const timeFile = `${logFile}.time`;
  const log = openSync(logFile, 'w');
  const start = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', '%U %S %M', '-o', timeFile, ...argv], {
    env: { ...process.env, ...env, TMPDIR: tmpDir },
    stdio: ['ignore', log, log],
  });
  current = child.pid;
  let treePeak = 0;
  let tmpPeak = 0;
  const sample = (): void => {
    if (child.pid === undefined) return;
    treePeak = Math.max(treePeak, treeRss(child.pid));
    tmpPeak = Math.max(tmpPeak, allocatedUnder(tmpDir));
  };
  const timer = setInterval(sample, SAMPLE_MS);
  sample();
  const exitCode = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(127));
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  const wallSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  clearInterval(timer);
  current = undefined;
  closeSync(log);
  const [user, sys, maxRssKiB] = readTimeFile(timeFile);
  return {
    exitCode,
    wallSeconds,
    cpuSeconds: user + sys,
    maxRssBytes: maxRssKiB * 1024,
    treeRssBytes: Math.max(treePeak, maxRssKiB * 1024),
    tmpPeakBytes: tmpPeak,
  };
}

/**
 * Seconds a `sync` takes right now. The bench syncs before each run, so after a run this is the
 * writeback of that run's dirty data: what a command that returns without fsyncing (`qemu-img
 * convert`, whose default cache mode for its output is unsafe) leaves to do before its output is
 * on disk, and close to nothing after one that fsyncs (sparsify).
 */
export function timeSync(): number {
  const start = process.hrtime.bigint();
  const result = spawnSync('sync', [], { stdio: 'ignore' });
  if (result.status !== 0) throw new Error(`sync failed (${result.error?.message ?? `exit ${result.status}`})`);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** "%U %S %M" as /usr/bin/time wrote it (after a "Command exited with…" line when non-zero). */
function readTimeFile(path: string): [number, number, number] {
  let last = '';
  try { last = readFileSync(path, 'utf8').trim().split('\n').pop() ?? ''; } catch { /* killed */ }
  const parts = last.split(' ').map(Number);
  return parts.length === 3 && parts.every(Number.isFinite) ? [parts[0]!, parts[1]!, parts[2]!] : [0, 0, 0];
}

/** Stops the measured command and everything below it (on SIGINT/SIGTERM); resolves once they are gone (or after 10 s). */
export async function stopCurrent(): Promise<void> {
  if (current === undefined) return;
  const pids = [current, ...descendants(current)];
  for (const pid of pids) {
    try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
  }
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };
  for (let waited = 0; waited < 10_000 && pids.some(alive); waited += 100) await new Promise((r) => setTimeout(r, 100));
}
