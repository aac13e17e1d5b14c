/**
 * The part of the command that touches disks: a run, a batch, an inspection. main.ts loads it
 * only once the command line asks for one of them, so that everything it imports (the engines,
 * qemu, libguestfs, the task tree) is not read by `--version`, `--help` or a refused option;
 * a batch and an inspection load their own modules (libvirt, xml2js, picomatch) in turn.
 */
import { Listr } from 'listr2';
import { makeContext } from '../context.js';
import { cancelledError } from '../errors.js';
import { TASK_TREE_OPTIONS, runUnderTree, sparsifyJob, type Job, type RunReport } from '../index.js';
import { openReportFiles } from '../report/report-files.js';
import { closingText } from '../report/summary.js';
import { chooseView, makeCliLogger, type RendererName } from './output.js';
import type { Command_ } from './parse-options.js';

/** A command line that asks for work on disks. */
export type RunCommand = Extract<Command_, { kind: 'run' | 'inspect' | 'batch' }>;

/** Runs `command` under one AbortController that SIGINT and SIGTERM abort; its exit code, or throws. */
export async function runCommand(command: RunCommand): Promise<number> {
  const presentation = command.presentation;
  const controller = new AbortController();
  installSignalHandlers(controller);
  const ctx = makeContext(makeCliLogger(presentation, command.kind === 'inspect' ? 'stderr' : 'stdout'), controller.signal);
  // Each kind loads its own modules: a plain run reads no libvirt, XML or inspection code.
  if (command.kind === 'inspect') return await (await import('./inspect.js')).runInspect(ctx, command.request, presentation);
  if (command.kind === 'batch') return await (await import('./batch.js')).runBatch(ctx, command.command, presentation);
  const reports = await openReportFiles(command.options, presentation.machineReadable);
  let failed = true;
  try {
    const view = chooseView(presentation, reports.machine, command.options.keys?.fromStdin);
    const job = sparsifyJob(command.options, ctx, view.ui, { onReport: (r) => reports.beforeCommit(r) });
    const report = await runShown(job, view.renderer);
    failed = false;
    if (!presentation.quiet && !presentation.machineReadable) process.stdout.write(closingText(report));
    return 0;
  } finally {
    await reports.close(failed);
  }
}

/**
 * Runs one job with its steps at the top of a task tree. A job refused before its first step
 * (an option, the output) shows no tree at all: its error is all there is to say.
 */
async function runShown(job: Job, renderer: RendererName): Promise<RunReport> {
  const run = runUnderTree(job, renderer === 'silent' ? {} : { progress: renderer === 'default' ? 'bar' : 'lines' });
  await run.begin();
  await new Listr(run.tasks, { ...TASK_TREE_OPTIONS, renderer } as never).run();
  return run.report;
}

function installSignalHandlers(controller: AbortController): void {
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      process.stderr.write(`sparsify: ${signal} again: exiting without cleanup\n`);
      process.exit(130);
    }
    controller.abort(cancelledError());
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

