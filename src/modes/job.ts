/**
 * A job: one disk's run as a straight script. The script runs its steps through a `Steps` given
 * to it, each step returning its value to the next; whoever runs the job decides how the steps
 * are shown (a listr2 task tree: task-tree.ts; nothing at all: runJob). What the script opens it
 * releases itself, before its promise settles, on success, error and Ctrl-C alike.
 */
import type { Progress } from '../progress/meter.js';
import type { RunReport } from '../report/types.js';

/** What a running step may show about itself. */
export interface StepView {
  /** Replaces the step's title (e.g. with what it found). */
  retitle(title: string): void;
  /** Where a step that copies or discards stands. */
  progress(progress: Progress): void;
  /** A line under the step saying what it is doing now (plain output prints it as a line). */
  note(text: string): void;
}

/** Runs a job's steps, in the order the job declared them. */
export interface Steps {
  /** Runs one step and returns its value; a step that throws ends the job with that error. */
  run<T>(title: string, fn: (view: StepView) => Promise<T>): Promise<T>;
  /** Marks a declared step as not needed, with the reason. */
  skip(title: string, reason: string): void;
  /** Runs `fn` for each item as a sub-step of one step, one after the other; returns their values in order. */
  each<T, R>(title: string, items: readonly T[], titleOf: (item: T) => string, fn: (item: T, view: StepView) => Promise<R>): Promise<R[]>;
}

/** One disk's run: its title, the titles of its steps, and the script that runs them. */
export interface Job {
  readonly title: string;
  /** Every step the script may run or skip, in order; a step the script passes over shows as skipped. */
  readonly steps: readonly string[];
  /** Runs the script: the report, once everything it opened is released (or the run's error, then). */
  run(steps: Steps): Promise<RunReport>;
}

const NO_VIEW: StepView = { retitle() {}, progress() {}, note() {} };

/** Steps that show nothing: each runs when the script calls it. */
export const silentSteps: Steps = {
  run: (_title, fn) => fn(NO_VIEW),
  skip() {},
  async each(_title, items, _titleOf, fn) {
    const out = [];
    for (const item of items) out.push(await fn(item, NO_VIEW));
    return out;
  },
};

/** Runs a job with nothing shown (the library's default). */
export function runJob(job: Job): Promise<RunReport> {
  return job.run(silentSteps);
}
