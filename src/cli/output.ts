import type { Logger } from '../context.js';
import type { RunUi } from '../modes/ui.js';
import { machineReadableUi, type LineSink } from '../report/machine-readable.js';
import type { Presentation } from './parse-options.js';

/**
 * The logger the CLI gives a run: warnings on stderr, -v debug, -x command lines; notices on
 * stdout, or on stderr when stdout carries a document (--inspect's XML or JSON).
 */
export function makeCliLogger(p: Presentation, notices: 'stdout' | 'stderr' = 'stdout'): Logger {
  const err = (line: string) => process.stderr.write(`${line}\n`);
  return {
    debug: (m) => p.verbose && err(`sparsify: ${m}`),
    info: (m) => !p.quiet && !p.machineReadable && (notices === 'stdout' ? process.stdout.write(`${m}\n`) : err(m)),
    warn: (m) => err(`sparsify: warning: ${m}`),
    trace: (argv) => p.trace && err(`+ ${argv.map(shellQuote).join(' ')}`),
  };
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** listr2's renderer: the redrawing tree on a terminal, plain lines otherwise, nothing for -q or machine output. */
export type RendererName = 'default' | 'simple' | 'silent';

/** How a run is shown: the task tree's renderer, and what the run's callbacks do. */
export interface CliView {
  readonly renderer: RendererName;
  readonly ui: RunUi;
}

/**
 * Machine lines (to `machine`) with --machine-readable; else listr2 on a terminal, plain lines
 * otherwise, and when the run prompts at the terminal (`prompts`: --keys-from-stdin on a terminal),
 * whose redrawn tree would overwrite the prompt.
 */
export function chooseView(p: Presentation, machine: LineSink | undefined, prompts = false): CliView {
  if (machine) return { renderer: 'silent', ui: machineReadableUi(machine) };
  const tty = Boolean(process.stdout.isTTY) && !p.verbose && !p.trace && !(prompts && process.stdin.isTTY);
  return {
    renderer: p.quiet ? 'silent' : tty ? 'default' : 'simple',
    ui: process.stdin.isTTY && !p.quiet ? { waitForReturn } : {},
  };
}

async function waitForReturn(prompt: string): Promise<void> {
  process.stderr.write(`${prompt}\n`);
  await new Promise<void>((resolve) => {
    process.stdin.once('data', () => resolve());
    process.stdin.resume();
  });
  process.stdin.pause();
}
