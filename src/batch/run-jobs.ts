/**
 * Several jobs under one listr2 task tree, `concurrency` at a time; a failed job fails its own
 * task only. Each job's script starts when its task starts (not before: a job's report promise
 * starts its script), so at most `concurrency` disks are open at once. Once `stop` fires (Ctrl-C,
 * SIGTERM) no further job starts: the ones running end by themselves on the same signal, the
 * others are reported NOT_STARTED.
 */
import { Listr, type ListrTask } from 'listr2';
import { TASK_TREE_OPTIONS, runUnderTree, type JobTaskOptions } from '../modes/task-tree.js';
import type { Job } from '../modes/job.js';
import type { RunReport } from '../report/types.js';

/** What became of one job: its report, or its error. */
export type JobResult = { readonly ok: true; readonly report: RunReport } | { readonly ok: false; readonly error: unknown };

/** One job of a tree and the title its task shows. */
export interface TitledJob {
  readonly title: string;
  readonly job: Job;
}

/** The error of a job whose task never started (the tree stopped first). */
export const NOT_STARTED = new Error('not started: the batch stopped before this disk');

/** Runs the jobs, `concurrency` at a time, telling `onSettled` as each one ends; resolves once every started job has released what it opened. */
export async function runJobs(
  jobs: readonly TitledJob[],
  concurrency: number,
  renderer: 'default' | 'simple' | 'silent',
  options: JobTaskOptions = {},
  onSettled?: (index: number, result: JobResult) => void,
  stop?: AbortSignal,
): Promise<JobResult[]> {
  const settled: Promise<JobResult>[] = [];
  const tasks: ListrTask[] = jobs.map(({ title, job }, i) => ({
    title,
    task: async (_, task) => {
      if (stop?.aborted) throw NOT_STARTED;
      const run = runUnderTree(job, options);
      settled[i] = run.report.then(
        (report): JobResult => ({ ok: true, report }),
        (error: unknown): JobResult => ({ ok: false, error }),
      );
      if (onSettled) void settled[i].then((result) => onSettled(i, result));
      await run.begin();
      return task.newListr(run.tasks, { exitOnError: true });
    },
  }));
  // The tree's own verdict is not needed: each result comes from its job's report promise.
  await new Listr(tasks, { ...TASK_TREE_OPTIONS, concurrent: concurrency, exitOnError: false, renderer } as never).run().catch(() => undefined);
  return Promise.all(jobs.map((_, i) => settled[i] ?? Promise.resolve<JobResult>({ ok: false, error: NOT_STARTED })));
}
