#!/usr/bin/env node
import { makeContext } from '../context.js';
import { SparsifyError, cancelledError, exitCodeOf, isSparsifyError } from '../errors.js';
import { runSparsify } from '../index.js';
import { explainSystemError } from '../util/errno.js';
import { formatSummary, makeCliLogger, makeCliUi } from './output.js';
import { parseCommandLine, type Presentation } from './parse-options.js';
import { openReportFiles } from './report-files.js';

/** The capability lines of `--machine-readable` with no disks (as virt-sparsify). */
const CAPABILITIES = ['virt-sparsify', 'linux-swap', 'zero', 'check-tmpdir', 'in-place', 'tmp-option', 'ntfs', 'btrfs'];

async function main(argv: readonly string[]): Promise<number> {
  let presentation: Presentation = { verbose: argv.includes('-v') || argv.includes('--verbose'), trace: false, quiet: false };
  try {
    const command = parseCommandLine(argv);
    if (command.kind === 'exit') return command.code;
    presentation = command.presentation;
    if (command.kind === 'capabilities') {
      process.stdout.write(`${CAPABILITIES.join('\n')}\n`);
      return 0;
    }
    const controller = new AbortController();
    installSignalHandlers(controller);
    const ctx = makeContext(makeCliLogger(presentation), controller.signal);
    const reports = await openReportFiles(command.options, presentation.machineReadable);
    let failed = true;
    try {
      const ui = makeCliUi(presentation, reports.machine);
      const report = await runSparsify(command.options, ctx, ui, { onReport: (r) => reports.beforeCommit(r) });
      failed = false;
      if (!presentation.quiet && !presentation.machineReadable) {
        process.stdout.write(`\n${formatSummary(report)}\n`);
        if (report.mode === 'copy') {
          process.stdout.write('\nBefore deleting the old disk, carefully check that the target disk boots and works correctly.\n');
        }
      }
      return 0;
    } finally {
      await reports.close(failed);
    }
  } catch (err) {
    printError(err, presentation);
    return exitCodeOf(err);
  }
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
