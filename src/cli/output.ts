import type { Logger } from '../context.js';
import type { RunUi } from '../modes/ui.js';
import type { RunReport } from '../report/types.js';
import { humanBytes } from '../util/size.js';
import { formatVerify } from '../verify/summary.js';
import type { Presentation } from './parse-options.js';
import type { LineSink } from './report-files.js';

/** The logger the CLI gives a run: warnings on stderr, -v debug, -x command lines. */
export function makeCliLogger(p: Presentation): Logger {
  const err = (line: string) => process.stderr.write(`${line}\n`);
  return {
    debug: (m) => p.verbose && err(`sparsify: ${m}`),
    info: (m) => !p.quiet && !p.machineReadable && process.stdout.write(`${m}\n`),
    warn: (m) => err(`sparsify: warning: ${m}`),
    trace: (argv) => p.trace && err(`+ ${argv.map(shellQuote).join(' ')}`),
  };
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The run's UI: listr2 on a terminal, plain lines otherwise, machine lines (to `machine`) with --machine-readable. */
export function makeCliUi(p: Presentation, machine: LineSink | undefined): RunUi {
  if (machine) {
    const stream = machine;
    let lastPercent = -1;
    return {
      renderer: 'silent',
      message: (t) => stream.write(`${t}\n`),
      progress: (done, total) => {
        const percent = total > 0 ? Math.floor((done * 100) / total) : 100;
        if (percent === lastPercent) return;
        lastPercent = percent;
        stream.write(`${done}/${total}\n`);
      },
    };
  }
  const tty = Boolean(process.stdout.isTTY) && !p.verbose && !p.trace;
  return {
    renderer: p.quiet ? 'silent' : tty ? 'default' : 'simple',
    ...(process.stdin.isTTY && !p.quiet ? { waitForReturn: waitForReturn } : {}),
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

/** The closing summary: per volume what was done and reclaimed, then sizes before and after. */
export function formatSummary(report: RunReport): string {
  const rows = report.volumes.map((v) => [v.name, v.type, v.handled, humanBytes(v.reclaimedBytes), v.reason]);
  const header = ['Volume', 'Type', 'Handled', 'Reclaimed', 'Why'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd(widths[i]!) : c)).join('  ');
  const out = [line(header), ...rows.map(line), ''];
  const inp = report.input;
  out.push(`Input:  ${humanBytes(inp.allocatedBytes)} allocated (${inp.format}, ${humanBytes(inp.virtualSizeBytes)} virtual) ${inp.path}`);
  if (report.output) {
    const o = report.output;
    out.push(`Output: ${humanBytes(o.allocatedBytes)} allocated (${o.format}${o.compressed ? ', compressed' : ''}) ${o.path}`);
  }
  if (report.allocatedBytesAfter !== undefined) {
    out.push(`After:  ${humanBytes(report.allocatedBytesAfter)} allocated`);
  }
  for (const note of report.notes ?? []) out.push(`Note:   ${note}`);
  if (report.verify) out.push(`Verify: ${formatVerify(report.verify, report.mode)}`);
  out.push(`Time:   ${(report.totalMs / 1000).toFixed(1)} s`);
  return out.join('\n');
}
