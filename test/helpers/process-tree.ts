/**
 * Watching the processes a run starts: every descendant of a pid seen while it runs (sampled),
 * so that a test can tell, after the run, which of them outlived it (an orphaned qemu is
 * reparented away from the run and no longer shows as its descendant). A process is recorded
 * again when its command line changes: a fork is seen first with its parent's, then exec's.
 */
import { readFileSync } from 'node:fs';
import { descendants } from '../../scripts/benchmark/measure.js';

/** One process as first seen. */
export interface SeenProcess {
  readonly pid: number;
  readonly cmdline: string;
}

function cmdlineOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return undefined;
  }
}

/** Samples the descendants of `root` every `everyMs` until stopped. */
export function watchDescendants(root: number, everyMs = 100): { seen(): SeenProcess[]; stop(): SeenProcess[] } {
  const seen = new Map<string, SeenProcess>();
  const sample = (): void => {
    for (const pid of descendants(root)) {
      const cmdline = cmdlineOf(pid);
      if (cmdline) seen.set(`${pid} ${cmdline}`, { pid, cmdline });
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    seen: () => [...seen.values()],
    stop: () => {
      clearInterval(timer);
      return [...seen.values()];
    },
  };
}

/** Those of `procs` still running the same command line (a reused pid runs another). */
export function stillRunning(procs: readonly SeenProcess[]): SeenProcess[] {
  return procs.filter((p) => cmdlineOf(p.pid) === p.cmdline);
}
