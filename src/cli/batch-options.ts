/**
 * The command line of a batch (issue 13): `-d DOMAIN` (repeatable) and/or several disks, in
 * place or copied into --output-dir, `--jobs N` at a time. Every other option is checked once,
 * as for a single disk, by the caller's validator, with placeholder paths standing for "each
 * disk" (src/libvirt/disk-runs.ts gives each domain disk its run).
 */
import { statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { BatchItem } from '../batch/batch-report.js';
import type { AllDomainsRequest } from '../libvirt/all-domains.js';
import type { Options } from '../options.js';

type Raw = Record<string, unknown>;

/** A batch run: its items in the order given (domains first), how many disks at once, its JSON report. */
export interface BatchCommand {
  readonly items: readonly BatchItem[];
  /** --all-domains: the connection's domains the filters select, listed when the batch runs, before the items. */
  readonly allDomains?: AllDomainsRequest;
  /** --jobs N; undefined: as many as the machine allows (src/batch/jobs.ts). */
  readonly jobs?: number;
  readonly jsonFile?: string;
  /** --resume: go on from the journal of an earlier run of the same batch (src/batch/journal.ts). */
  readonly resume: boolean;
}

function usage(message: string): SparsifyError {
  return new SparsifyError('USAGE', message, { hint: "see 'sparsify --help'" });
}

/** Whether the command line asks for a batch rather than virt-sparsify's one disk. */
export function isBatch(o: Raw, disks: readonly string[]): boolean {
  const inPlace = Boolean(o.inPlace || o.inplace);
  return (o.domain as string[]).length > 0 || Boolean(o.allDomains) || o.outputDir !== undefined || (inPlace && disks.length > 1) || o.jobs !== undefined || Boolean(o.resume);
}

/** Checks a batch's own options; `validate` checks the rest as for one disk. */
export function validateBatch(o: Raw, disks: readonly string[], validate: (o: Raw, disks: string[]) => Options): BatchCommand {
  const domains = o.domain as string[];
  const allDomains = Boolean(o.allDomains);
  const filters = o.filter as string[];
  if (filters.length > 0 && !allDomains) throw usage('--filter goes with --all-domains');
  if (allDomains && domains.length > 0) throw usage('you cannot use -d and --all-domains options together: --all-domains takes every domain (--filter picks some)');
  if ((domains.length > 0 || allDomains) && o.format !== undefined) throw usage("-d: each disk's format comes from the domain definition; drop --format");
  if (o.ova) throw usage('you cannot use --ova in a batch: an OVA is not a disk a domain can use');
  const inPlace = Boolean(o.inPlace || o.inplace);
  const outputDir = o.outputDir === undefined ? undefined : resolve(o.outputDir as string);
  const updateDomain = Boolean(o.updateDomain);
  if (inPlace && outputDir !== undefined) throw usage('you cannot use --in-place and --output-dir options together');
  if (inPlace && updateDomain) throw usage('--update-domain goes with copy mode: in place the domain keeps its disks');
  if (updateDomain && domains.length === 0 && !allDomains) throw usage('--update-domain goes with -d DOMAIN or --all-domains');
  if (!inPlace && outputDir === undefined) throw usage('copy mode with -d or several disks needs --output-dir DIR (one output per disk)');
  if (outputDir !== undefined && !statSync(outputDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw usage(`--output-dir ${outputDir}: not a directory`);
  }
  if (updateDomain && o.dryRun) throw usage('you cannot use --update-domain and --dry-run options together: a dry run writes no disk');
  const jobs = o.jobs === undefined ? undefined : parseJobs(o.jobs as string);
  // --keep-backing over a batch keeps the chains there are: a disk with none is copied as it is.
  const forDisk = (input: string, name: string) => {
    const options = validate(o, outputDir === undefined ? [input] : [input, join(outputDir, name)]);
    return options.mode === 'copy' && options.keepBacking ? { ...options, keepBacking: 'where-chained' as const } : options;
  };
  const base = forDisk(outputDir === undefined ? '.sparsify-batch-disk' : join(outputDir, '.sparsify-batch-disk'), '.sparsify-batch-output');
  const connection = o.connect === undefined ? {} : { uri: o.connect as string };
  const request = { connection, base, ...(outputDir !== undefined ? { outputDir } : {}), updateDomain };
  const items: BatchItem[] = domains.map((domain) => ({ kind: 'domain', request: { domain, ...request } }));
  const names = new Set<string>();
  for (const disk of disks) {
    const name = basename(disk);
    if (names.has(name)) throw usage(`two disks named ${name}: their outputs in --output-dir would be one file; run them separately`);
    names.add(name);
    const { jsonFile: _json, ...options } = forDisk(disk, name);
    items.push({ kind: 'disk', options });
  }
  return { items, resume: Boolean(o.resume), ...(allDomains ? { allDomains: { filters, request } } : {}), ...(jobs !== undefined ? { jobs } : {}), ...(base.jsonFile ? { jsonFile: base.jsonFile } : {}) };
}

function parseJobs(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw usage(`--jobs: ‘${value}’ is not a number of jobs from 1 to 64`);
  return n;
}
