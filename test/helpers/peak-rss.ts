/**
 * Peak memory of a sparsify run, each process counted on its own:
 *
 * - sparsify's node process: its VmHWM (peak resident set, proc(5)) read from /proc every
 *   SAMPLE_MS while it runs. VmHWM only grows, so the last read misses at most the last
 *   SAMPLE_MS of the run; and `/usr/bin/time -f %M` around the run gives the kernel's maxrss at
 *   its exit, the largest peak of the node process and of every child it reaped, an upper bound
 *   of node's own peak that covers the run to its end.
 * - each process below it (qemu-storage-daemon, nbdfuse, fstrim…): other programs, whose peaks
 *   are sampled the same way and reported by name, and summed with node's for the tree.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { descendants } from '../../scripts/benchmark/measure.js';
import { CLI, waitForExit, type CliResult } from './cli.js';

const SAMPLE_MS = 50;

/** One process's peak resident memory. */
export interface ProcessPeak {
  readonly pid: number;
  readonly name: string;
  readonly peakBytes: number;
}

/** A run and its memory. */
export interface MeasuredRun extends CliResult {
  /** sparsify's node process, sampled. */
  readonly nodePeakBytes: number;
  /** /usr/bin/time's %M: the largest peak of node and the children it reaped. */
  readonly maxRssBytes: number;
  /** The processes below node (the daemons), sampled. */
  readonly childPeaks: readonly ProcessPeak[];
  /** node's peak plus every child's peak: at least the tree's peak at any one moment. */
  readonly treePeakBytes: number;
}

/** Runs `sparsify ARGS` under /usr/bin/time and samples its processes' peak RSS until it exits. */
export async function runCliMeasured(args: readonly string[], timeFile: string, env: Record<string, string> = {}): Promise<MeasuredRun> {
  const child = spawn('/usr/bin/time', ['-f', '%M', '-o', timeFile, process.execPath, CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = waitForExit(child);
  const peaks = new Map<number, ProcessPeak>();
  let nodePid: number | undefined;
  const sample = (): void => {
    if (child.pid === undefined) return;
    const below = descendants(child.pid);
    nodePid ??= below[0]; // time's only child; its own children come after it
    for (const pid of below) {
      const status = readStatus(pid);
      if (status && status.peakBytes > (peaks.get(pid)?.peakBytes ?? -1)) peaks.set(pid, { pid, ...status });
    }
  };
  const timer = setInterval(sample, SAMPLE_MS);
  sample();
  const result = await exited.finally(() => clearInterval(timer));
  const maxRssKiB = Number((await readFile(timeFile, 'utf8')).trim().split('\n').at(-1));
  const nodePeakBytes = nodePid === undefined ? 0 : (peaks.get(nodePid)?.peakBytes ?? 0);
  const childPeaks = [...peaks.values()].filter((p) => p.pid !== nodePid && p.peakBytes > 0);
  return {
    ...result,
    nodePeakBytes,
    maxRssBytes: maxRssKiB * 1024,
    childPeaks,
    treePeakBytes: childPeaks.reduce((sum, p) => sum + p.peakBytes, nodePeakBytes),
  };
}

function readStatus(pid: number): { name: string; peakBytes: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined; // gone between the listing and the read
  }
  const name = /^Name:\s*(.*)$/m.exec(text)?.[1] ?? '?';
  const hwmKiB = Number(/^VmHWM:\s*(\d+) kB$/m.exec(text)?.[1] ?? 0);
  return { name, peakBytes: hwmKiB * 1024 };
}
