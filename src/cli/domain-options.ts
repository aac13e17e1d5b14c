/**
 * The command line of `-d DOMAIN` (issue 13): what goes with it and what does not. Every other
 * option is checked once, as for a single disk, by the caller's validator, with placeholder
 * paths standing for "each disk" (src/libvirt/disk-runs.ts gives each run its disk).
 */
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { DomainRequest } from '../libvirt/domain-run.js';
import type { Options } from '../options.js';

type Raw = Record<string, unknown>;

/** The run of `-d`: the request, and where its JSON report goes. */
export interface DomainCommand {
  readonly request: DomainRequest;
  readonly jsonFile?: string;
}

function usage(message: string): SparsifyError {
  return new SparsifyError('USAGE', message, { hint: "see 'sparsify --help'" });
}

/** Checks `-d` and its companions; `validate` checks the rest as for one disk. */
export function validateDomain(o: Raw, disks: readonly string[], validate: (o: Raw, disks: string[]) => Options): DomainCommand {
  const domain = o.domain as string;
  if (disks.length > 0) throw usage('-d takes the disks from the domain definition: give no disk arguments');
  if (o.format !== undefined) throw usage("-d: each disk's format comes from the domain definition; drop --format");
  if (o.machineReadable) throw usage('you cannot use -d and --machine-readable options together (not yet)');
  if (o.ova) throw usage('you cannot use -d and --ova options together: an OVA is not a disk the domain can use');
  const inPlace = Boolean(o.inPlace || o.inplace);
  const outputDir = o.outputDir === undefined ? undefined : resolve(o.outputDir as string);
  const updateDomain = Boolean(o.updateDomain);
  if (inPlace && outputDir !== undefined) throw usage('you cannot use --in-place and --output-dir options together');
  if (inPlace && updateDomain) throw usage('--update-domain goes with copy mode: in place the domain keeps its disks');
  if (!inPlace && outputDir === undefined) throw usage('copy mode with -d needs --output-dir DIR (one output per disk)');
  if (outputDir !== undefined && !statSync(outputDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw usage(`--output-dir ${outputDir}: not a directory`);
  }
  if (updateDomain && o.dryRun) throw usage('you cannot use --update-domain and --dry-run options together: a dry run writes no disk');
  const placeholders = outputDir === undefined ? [domain] : [join(outputDir, '.sparsify-domain-disk'), join(outputDir, '.sparsify-domain-output')];
  const base = validate(o, placeholders);
  const connection = o.connect === undefined ? {} : { uri: o.connect as string };
  return {
    request: { domain, connection, base, ...(outputDir !== undefined ? { outputDir } : {}), updateDomain },
    ...(base.jsonFile ? { jsonFile: base.jsonFile } : {}),
  };
}
