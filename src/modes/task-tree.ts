/**
 * Jobs under a listr2 task tree. A job is a straight script (job.ts) and listr2 wants its tasks
 * up front, so the two meet step by step: the tree holds one task per declared step, each waits
 * until the script reaches (or passes) its step, runs it and hands the value back. A failure
 * reaches the tree only once the script has finished releasing what it opened, as the script's
 * own error, so a caller that exits on it leaves nothing behind. The renderer is the caller's.
 */
import type { ListrTask, ListrTaskWrapper } from 'listr2';
import { SparsifyError } from '../errors.js';
import type { Progress } from '../progress/meter.js';
import { ProgressThrottle, percentOf, progressText } from '../progress/text.js';
import type { RunReport } from '../report/types.js';
import type { Job, StepView, Steps } from './job.js';

/** How a job's steps show in a tree. */
export interface JobTaskOptions {
  /**
   * How a step shows its progress, as its output: `bar`, a bar and the figures, redrawn up to
   * BAR_EVERY_MS (listr2's default renderer); `lines`, the figures, one line every LINE_EVERY_MS
   * (renderers that print each output as a line); none by default.
   */
  readonly progress?: 'bar' | 'lines';
  /** Receives the job's report when it succeeds. */
  readonly onReport?: (report: RunReport) => void;
}

/**
 * What every tree of jobs needs: no signal listeners of listr2's own (it would exit on Ctrl-C and
 * skip the cleanup; the caller's signal handler aborts the run instead), stop at the first error.
 */
export const TASK_TREE_OPTIONS = {
  fallbackRenderer: 'simple',
  registerSignalListeners: false,
  exitOnError: true,
  collectErrors: false,
  rendererOptions: { collapseSubtasks: false, timer: undefined },
} as const;

/** A job as one task whose subtasks are its steps: several jobs (disks) under one tree. */
export function jobTask(job: Job, options: JobTaskOptions = {}): ListrTask {
  return {
    title: job.title,
    task: async (_, task) => {
      const run = runUnderTree(job, options);
      await run.begin();
      return task.newListr(run.tasks);
    },
  };
}

type Wrapper = ListrTaskWrapper<unknown, never, never>;

/** What the script asked of one declared step. */
type Entry = { kind: 'run'; run: (task: Wrapper) => unknown } | { kind: 'skip'; reason?: string } | { kind: 'ended'; error?: unknown };

/** A job whose steps a task tree shows. */
export interface TreeRun {
  /**
   * Starts the script; settles when it reaches its first step, or rejects with its error when it
   * fails before (a refused option or output: then no step is shown failing, nothing ran yet).
   */
  begin(): Promise<void>;
  /** One task per declared step, then a hidden one that ends with the script (and gives `onReport` the report). */
  readonly tasks: ListrTask[];
  /** The report, once the script has ended. */
  readonly report: Promise<RunReport>;
}

/** Runs a job under a task tree: its steps are `tasks`, e.g. the top level of a tree that shows one job. */
export function runUnderTree(job: Job, options: JobTaskOptions = {}): TreeRun {
  const slots = job.steps.map(() => deferred<Entry>());
  const reached = deferred<void>();
  let next = 0;
  let failure: { error: unknown } | undefined;
  let script: Promise<RunReport> | undefined;
  const start = (): Promise<RunReport> => {
    if (script) return script;
    script = job.run(steps);
    const end = (error?: unknown) => {
      for (const slot of slots) slot.resolve({ kind: 'ended', error });
    };
    script.then(() => end(), end);
    return script;
  };
  /** The error the tree reports: the script's, once it has settled (it may explain or replace a step's). */
  const finalError = async (stepError: unknown): Promise<unknown> => start().then(() => stepError, (err: unknown) => err);
  const settle = async <T>(work: () => Promise<T>, resolve: (v: T) => void, reject: (e: unknown) => void): Promise<void> => {
    try {
      resolve(await work());
    } catch (err) {
      failure = { error: err };
      reject(err);
      throw await finalError(err);
    }
  };
  const take = (title: string): Deferred<Entry> => {
    if (failure) throw failure.error;
    const i = job.steps.indexOf(title, next);
    if (i < 0) throw new SparsifyError('INTERNAL', `${job.title}: step "${title}" is not declared, or comes out of order`);
    for (; next < i; next++) slots[next]!.resolve({ kind: 'skip' });
    next = i + 1;
    reached.resolve();
    return slots[i]!;
  };
  const steps: Steps = {
    run: (title, fn) =>
      new Promise((resolve, reject) => {
        take(title).resolve({ kind: 'run', run: (task) => settle(() => fn(viewOf(task, options)), resolve, reject) });
      }),
    skip: (title, reason) => take(title).resolve({ kind: 'skip', reason }),
    each: <T, R>(title: string, items: readonly T[], titleOf: (item: T) => string, fn: (item: T, view: StepView) => Promise<R>) =>
      new Promise<R[]>((resolve, reject) => {
        const results: R[] = [];
        const subtasks: ListrTask[] = items.map((item, i) => ({
          title: titleOf(item),
          task: (_, sub) => settle(() => fn(item, viewOf(sub as Wrapper, options)), (r) => (results[i] = r), reject),
        }));
        subtasks.push({ task: () => resolve(results) });
        take(title).resolve({ kind: 'run', run: (task) => task.newListr(subtasks, { concurrent: false, exitOnError: true }) });
      }),
  };
  const stepTasks: ListrTask[] = job.steps.map((title, i) => ({
    title,
    rendererOptions: { bottomBar: 1 },
    task: async (_, task) => {
      void start();
      const entry = await slots[i]!.promise;
      if (entry.kind === 'run') return entry.run(task as Wrapper);
      if (entry.kind === 'ended' && entry.error !== undefined) throw entry.error;
      task.skip(entry.kind === 'skip' ? entry.reason : undefined);
      return undefined;
    },
  }));
  return {
    begin: () => Promise.race([reached.promise, start().then(() => undefined)]),
    tasks: [...stepTasks, { task: async () => void options.onReport?.(await start()) }],
    get report() {
      return start();
    },
  };
}

/** How often a redrawn bar changes: often enough to look alive. */
const BAR_EVERY_MS = 250;
/** How often a plain progress line is printed: a log stays readable. */
const LINE_EVERY_MS = 1000;

/** What a step shows: its title, and its progress as `options.progress` says. */
function viewOf(task: Wrapper, options: JobTaskOptions): StepView {
  const style = options.progress;
  const throttle = new ProgressThrottle(style === 'bar' ? BAR_EVERY_MS : LINE_EVERY_MS);
  return {
    retitle: (title) => void (task.title = title),
    note: (text) => void (task.output = text),
    progress: (p) => {
      if (!style || !throttle.due(p)) return;
      const text = style === 'bar' ? `${progressBar(p)} ${progressText(p)}` : progressText(p);
      if (text !== task.output) task.output = text;
    },
  };
}

/** A text progress bar, `[#####-----]`, full only when done. */
export function progressBar(p: Progress, width = 30): string {
  const full = Math.floor((percentOf(p) * width) / 100);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}]`;
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  /** Settles once; later calls are ignored. */
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
