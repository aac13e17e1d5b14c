#!/usr/bin/env node
import { SparsifyError, exitCodeOf, isSparsifyError } from '../errors.js';
import { capabilityLines } from '../report/machine-readable.js';
import { listOperations } from '../template/operations/select.js';
import { explainSystemError } from '../util/errno.js';
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
    // Only a run loads the engines, qemu, libguestfs and the task tree: --version, --help, a refused option stay quick.
    const { runCommand } = await import('./run-command.js');
    return await runCommand(command);
  } catch (err) {
    printError(err, presentation);
    return exitCodeOf(err);
  }
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
