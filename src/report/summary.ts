/** The report as a person reads it at the end of a run on a terminal or in a log. */
import { humanBytes } from '../util/size.js';
import { formatShrink } from './shrink.js';
import { formatTemplate } from './template.js';
import type { ChainReport, RunReport, VerifyReport } from './types.js';

/** The closing summary: per volume what was done, by which engine, and reclaimed, then sizes before and after. */
export function formatSummary(report: RunReport): string {
  // A dry run examined no filesystem and wrote nothing: what sealing would do is all there is.
  if (report.template?.dryRun) return formatTemplate(report.template).join('\n');
  const rows = report.volumes.map((v) => [v.name, v.type, v.engine ?? '-', v.handled, humanBytes(v.reclaimedBytes), v.reason]);
  const header = ['Volume', 'Type', 'Engine', 'Handled', 'Reclaimed', 'Why'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd(widths[i]!) : c)).join('  ');
  const out = [...(report.template ? [...formatTemplate(report.template), ''] : []), line(header), ...rows.map(line), ''];
  const inp = report.input;
  out.push(`Input:  ${humanBytes(inp.allocatedBytes)} allocated (${inp.format}, ${humanBytes(inp.virtualSizeBytes)} virtual) ${inp.path}`);
  if (report.output) {
    const o = report.output;
    out.push(`Output: ${humanBytes(o.allocatedBytes)} allocated (${o.format}${o.compressed ? ', compressed' : ''}) ${o.path}`);
  }
  if (report.chain) out.push(`Chain:  ${formatChain(report.chain)}`);
  if (report.shrink) out.push(...formatShrink(report.shrink));
  if (report.allocatedBytesAfter !== undefined) {
    out.push(`After:  ${humanBytes(report.allocatedBytesAfter)} allocated`);
  }
  for (const note of report.notes ?? []) out.push(`Note:   ${note}`);
  if (report.verify) out.push(`Verify: ${formatVerify(report.verify, report.mode)}`);
  out.push(`Time:   ${(report.totalMs / 1000).toFixed(1)} s`);
  return out.join('\n');
}

/** What copy mode did with the input's backing chain, as the summary and a batch's line say it. */
export function formatChain(chain: ChainReport): string {
  return chain.handled === 'kept' ? `kept the backing chain (${chain.base})` : `flattened (backing file ${chain.base})`;
}

/** What follows a successful run on standard output: the summary, and in copy mode virt-sparsify's advice. */
export function closingText(report: RunReport): string {
  const advice = report.mode === 'copy' && !report.template?.dryRun ? '\nBefore deleting the old disk, carefully check that the target disk boots and works correctly.\n' : '';
  return `\n${formatSummary(report)}\n${advice}`;
}

/** The summary line of --verify: what was checked, and what was not and why. */
export function formatVerify(v: VerifyReport, mode: 'copy' | 'in-place'): string {
  const same = mode === 'copy' ? 'identical to the source' : 'unchanged';
  const parts = [
    `${v.ok ? 'ok' : 'FAILED'}: ${humanBytes(v.checkedBytes)} checked`,
    `${humanBytes(v.identicalBytes)} ${same}`,
    `${humanBytes(v.zeroBytes)} made zero and reading as zero`,
  ];
  const skipped = v.notVerified.map((n) => `${n.name} (${n.reason})`);
  const tail = skipped.length ? `; not verified: ${skipped.join(', ')}` : '';
  return `${parts.join(', ')} in ${(v.ms / 1000).toFixed(1)} s${tail}`;
}
