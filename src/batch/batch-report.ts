/**
 * A batch: its items (domains, disks), what became of each disk and domain, and the totals. Pure:
 * outcomes in, the report and its lines out. One failed disk is an outcome like any other; the
 * exit code says whether any failed (EXIT.SOME_FAILED).
 */
import type { DomainRequest } from '../libvirt/domain-run.js';
import type { SkippedDisk } from '../libvirt/domain-xml.js';
import type { Options } from '../options.js';
import { formatChain } from '../report/summary.js';
import type { RunReport } from '../report/types.js';
import { humanBytes } from '../util/size.js';

/** One thing a batch was asked to do. */
export type BatchItem =
  | {
      readonly kind: 'domain';
      readonly request: DomainRequest;
      /** Taken by --all-domains: one not shut off, or with no disk to take, is skipped, not failed. */
      readonly listed?: boolean;
    }
  | { readonly kind: 'disk'; readonly options: Options };

/** What became of one disk. */
export interface DiskOutcome {
  /** The domain it belongs to, and its target there. */
  readonly domain?: string;
  readonly target?: string;
  readonly source: string;
  readonly status: 'done' | 'failed';
  /** --resume: an earlier run of the batch finished it; the report is that run's. */
  readonly resumed?: boolean;
  /** The one-line error of a failed disk. */
  readonly error?: string;
  readonly report?: RunReport;
}

/** What became of one domain: refused before any disk, skipped (--all-domains), or its disks run (and maybe redefined). */
export interface DomainOutcome {
  readonly name: string;
  readonly uuid?: string;
  readonly connection: string | null;
  readonly status: 'done' | 'failed' | 'skipped';
  readonly error?: string;
  readonly skipped: readonly SkippedDisk[];
  /** --update-domain: the definitions before and after, and where the previous one was saved. */
  readonly update?: { readonly previousDefinition: string; readonly definition: string; readonly previousDefinitionFile: string };
}

/** The sums over the disks. */
export interface BatchTotal {
  readonly disks: number;
  readonly done: number;
  readonly failed: number;
  /** Host bytes given back (in place) or not written (copy), over the finished disks. */
  readonly reclaimedBytes: number;
}

/** The --json document of a batch. */
export interface BatchReport {
  readonly tool: 'sparsify';
  readonly version: string;
  readonly domains: readonly DomainOutcome[];
  readonly disks: readonly DiskOutcome[];
  readonly total: BatchTotal;
}

/** What one finished disk gave back: allocated bytes before less after (in place) or less the output's (copy). */
export function reclaimedBytesOf(report: RunReport): number {
  const after = report.output?.allocatedBytes ?? report.allocatedBytesAfter ?? report.input.allocatedBytes;
  return Math.max(0, report.input.allocatedBytes - after);
}

/** The sums of a batch's disk outcomes. */
export function batchTotal(disks: readonly DiskOutcome[]): BatchTotal {
  const done = disks.filter((d) => d.status === 'done');
  return {
    disks: disks.length,
    done: done.length,
    failed: disks.length - done.length,
    reclaimedBytes: done.reduce((sum, d) => sum + (d.report ? reclaimedBytesOf(d.report) : 0), 0),
  };
}

/** A disk's name in lines: `domain/target` for a domain's disk, else its path. */
export function diskLabel(d: Pick<DiskOutcome, 'domain' | 'target' | 'source'>): string {
  return d.domain !== undefined ? `${d.domain}/${d.target} (${d.source})` : d.source;
}

/** One line per domain refused, failed or skipped (`NAME: FAILED: why`, `NAME: skipped: why`). */
export function domainLines(domains: readonly DomainOutcome[]): string[] {
  return domains.filter((d) => d.status !== 'done').map((d) => `${d.name}: ${d.status === 'failed' ? 'FAILED' : 'skipped'}: ${d.error}`);
}

/** The closing lines of a batch: one per domain refused, failed or skipped, one per disk, then the total. */
export function batchLines(domains: readonly DomainOutcome[], disks: readonly DiskOutcome[]): string[] {
  const lines = domainLines(domains);
  for (const d of disks) {
    if (d.status !== 'done') {
      lines.push(`${diskLabel(d)}: FAILED: ${d.error}`);
      continue;
    }
    const chain = d.report!.chain ? `, ${formatChain(d.report!.chain)}` : '';
    lines.push(`${diskLabel(d)}: ${d.resumed ? 'done by an earlier run' : 'done'}, ${humanBytes(reclaimedBytesOf(d.report!))} reclaimed${chain}`);
  }
  const t = batchTotal(disks);
  lines.push(`Total: ${t.done} of ${t.disks} disks done${t.failed ? `, ${t.failed} failed` : ''}, ${humanBytes(t.reclaimedBytes)} reclaimed`);
  return lines;
}
