#!/usr/bin/env node
import { Listr } from 'listr2';
import { makeContext } from '../context.js';
import { SparsifyError, cancelledError, exitCodeOf, isSparsifyError } from '../errors.js';
import { TASK_TREE_OPTIONS, runUnderTree, sparsifyJob, type Job, type RunReport } from '../index.js';
import { capabilityLines } from '../report/machine-readable.js';
import { openReportFiles } from '../report/report-files.js';
import { closingText } from '../report/summary.js';
import { listOperations } from '../template/operations/select.js';
import { explainSystemError } from '../util/errno.js';
import { chooseView, makeCliLogger, type RendererName } from './output.js';
import { runBatch } from './batch.js';
import { runInspect } from './inspect.js';
import { parseCommandLine, type Presentation } from './parse-options.js';

async function main(argv: readonly string[]): Promise<number> {
  let presentation: Presentation = { verbose: argv.includes('-v') || argv.includes('--verbose'), trace: false, quiet: false };
  try {
    const command = parseCommandLine(argv);
    if (command.kind === 'exit') return command.code;
    if (command.kind === 'list-operations') {
      process.stdout.write(listOperations());
      return 0;
    }
    presentation = command.presentation;
    if (command.kind === 'capabilities') {
      process.stdout.write(capabilityLines());
      return 0;
    }
    const controller = new AbortController();
    installSignalHandlers(controller);
    const ctx = makeContext(makeCliLogger(presentation, command.kind === 'inspect' ? 'stderr' : 'stdout'), controller.signal);
    if (command.kind === 'inspect') return await runInspect(ctx, command.request, presentation);
    if (command.kind === 'batch') return await runBatch(ctx, command.command, presentation);
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
  } catch (err) {
    printError(err, presentation);
    return exitCodeOf(err);
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

function printError(error: unknown, p: Presentation): void {
  // Last resort: a system error nobody explained still gets a one-line message naming its path.
  const err = explainSystemError(error);
  const e = isSparsifyError(err) ? err : new SparsifyError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
  const firstLine = e.message.split('\n')[0];
  process.stderr.write(`sparsify: error: ${firstLine}\n`);
  if (e.hint) process.stderr.write(`sparsify: hint: ${e.hint}\n`);
  if (p.verbose) process.stderr.write(`${describeCause(err)}\n`);
}

function describeCause(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 5; depth++) {
    parts.push(cur instanceof Error ? (cur.stack ?? cur.message) : String(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join('\ncaused by: ');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`sparsify: internal error: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
