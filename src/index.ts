/** The library API: the CLI is a thin layer over these. */
import type { RunContext } from './context.js';
import { copyJob } from './modes/copy.js';
import { inPlaceJob } from './modes/in-place.js';
import { runJob, type Job } from './modes/job.js';
import type { RunHooks } from './modes/run-hooks.js';
import { silentUi, type RunUi } from './modes/ui.js';
import type { CopyOptions, InPlaceOptions, Options } from './options.js';
import type { RunReport } from './report/types.js';

export { SparsifyError, EXIT, exitCodeOf, type ErrorCode } from './errors.js';
export { makeContext, silentLogger, type Logger, type RunContext } from './context.js';
export type { Options, CopyOptions, InPlaceOptions } from './options.js';
export type { RunReport, VolumeReport } from './report/types.js';
export { silentUi, type RunUi } from './modes/ui.js';
export type { RunHooks } from './modes/run-hooks.js';
export { runJob, silentSteps, type Job, type Steps, type StepView } from './modes/job.js';
export { TASK_TREE_OPTIONS, jobTask, runUnderTree, type JobTaskOptions, type TreeRun } from './modes/task-tree.js';
export { copyJob, inPlaceJob };

/**
 * One disk's run in the mode its options name, as a job: its steps, and the script that runs
 * them (see modes/job.ts). Run it with `runJob`, or under a listr2 tree with `jobTask` /
 * `runUnderTree`, several disks under one tree if need be. `hooks.onReport` gets the report
 * before copy mode puts the output in place (a throw there leaves no output).
 */
export function sparsifyJob(options: Options, ctx: RunContext, ui: RunUi = silentUi, hooks: RunHooks = {}): Job {
  return options.mode === 'copy' ? copyJob(options, ctx, ui, hooks) : inPlaceJob(options, ctx, ui, hooks);
}

/** Runs one validated set of options in its mode, showing nothing, and returns the report. */
export function runSparsify(options: Options, ctx: RunContext, ui: RunUi = silentUi, hooks: RunHooks = {}): Promise<RunReport> {
  return runJob(sparsifyJob(options, ctx, ui, hooks));
}

/** Copy mode, run as runSparsify runs it. */
export const sparsifyCopy: (options: CopyOptions, ctx: RunContext, ui?: RunUi, hooks?: RunHooks) => Promise<RunReport> = runSparsify;

/** In-place mode, run as runSparsify runs it. */
export const sparsifyInPlace: (options: InPlaceOptions, ctx: RunContext, ui?: RunUi, hooks?: RunHooks) => Promise<RunReport> = runSparsify;
