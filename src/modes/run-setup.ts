import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import type { Options } from '../options.js';
import type { ImageInfo } from '../qemu/img.js';
import { PhaseClock } from './phase-clock.js';
import { BASE_TOOLS, isRoot, preflight } from './preflight.js';
import type { RunUi } from './ui.js';
import { removeDebris, type DebrisPlaces } from '../host/debris.js';
import { snapshotInput, type InputSnapshot } from '../host/input-guard.js';
import { LAUNCHER } from '../util/run.js';

/** What every mode starts with: a context whose warnings are collected for the report, and a clock. */
export interface RunStart {
  readonly run: RunContext;
  readonly warnings: string[];
  readonly clock: PhaseClock;
  readonly say: (text: string) => void;
  /** The input as it was when the run started (host/input-guard.ts). */
  readonly input: InputSnapshot;
}

/**
 * Checks the engine choice and the programs every run needs (those of the engines come after
 * planning, from the engines chosen: volume-pass.ts examineDisk), wraps the logger so that warnings reach the report,
 * removes what killed runs left (with a warning each), and records the input's stat.
 */
export async function startRun(ctx: RunContext, ui: RunUi, options: Options): Promise<RunStart> {
  if (options.engine === 'mount' && !isRoot()) {
    throw new SparsifyError('USAGE', '--engine mount needs root', { hint: 'run as root, or use --engine auto' });
  }
  await preflight([...BASE_TOOLS, LAUNCHER]);
  const warnings: string[] = [];
  const log = { ...ctx.log, warn: (m: string) => (warnings.push(m), ctx.log.warn(m)) };
  const run = { signal: ctx.signal, log };
  await removeDebris(run, debrisPlaces(options));
  return { run, warnings, clock: new PhaseClock(), say: (t) => ui.message?.(t), input: await snapshotInput(options.input) };
}

/** Where this run's own work directories and partial output go: where a killed run's would be. */
function debrisPlaces(options: Options): DebrisPlaces {
  if (options.mode === 'in-place') return { tmpDirs: [tmpdir(), '/tmp'] };
  const tmpDirs = [tmpdir(), '/tmp', ...(options.tmp.kind === 'dir' ? [options.tmp.path] : [])];
  return { tmpDirs, outputDir: dirname(options.output) };
}

/** qemu's warning when it had to guess raw, in one line. */
export function warnIfProbedRaw(ctx: RunContext, info: ImageInfo, path: string): void {
  if (info.probedRaw) {
    ctx.log.warn(`image format was not specified for '${path}' and probing guessed raw; add --format raw to say so`);
  }
}
