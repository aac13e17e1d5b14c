/**
 * `-d DOMAIN`: a domain → one run per disk, and after a copy with --update-domain the domain
 * pointed at the new disks. The state is checked before anything is read and again before the
 * definition is replaced; a domain started in between is caught by qemu's image lock, which
 * every run takes.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import type { Options } from '../options.js';
import type { RunReport } from '../report/types.js';
import { fsyncFile } from '../util/fsync.js';
import { diskRuns, type DiskRun } from './disk-runs.js';
import { refuseUnlessShutOff } from './domain-state.js';
import { parseDomainXml, rewriteDiskSources, type DomainDefinition, type NewDiskSource } from './domain-xml.js';
import { defineDomain, readDomainState, readDomainXml, type Connection } from './virsh.js';

/** What `-d` asks for. */
export interface DomainRequest {
  /** Name or UUID, as virsh takes it. */
  readonly domain: string;
  readonly connection: Connection;
  /** The validated run each disk gets, its input (and output) standing for the disk. */
  readonly base: Options;
  /** Copy mode: where each disk's output goes. */
  readonly outputDir?: string;
  /** Copy mode: point the domain at the new disks once every copy succeeded. */
  readonly updateDomain: boolean;
}

/** A shut-off domain, its definition as read, and one run per disk it takes. */
export interface DomainPlan {
  readonly request: DomainRequest;
  readonly xml: string;
  readonly definition: DomainDefinition;
  readonly runs: readonly DiskRun[];
}

/** What --update-domain did. */
export interface DomainUpdate {
  /** The definition before, also saved as {@link savedAs}. */
  readonly previousXml: string;
  readonly newXml: string;
  readonly savedAs: string;
}

/** Refuses a domain that is not shut off (DOMAIN_ACTIVE), reads its definition and plans a run per disk. */
export async function planDomain(ctx: RunContext, request: DomainRequest): Promise<DomainPlan> {
  const { domain, connection } = request;
  refuseUnlessShutOff(domain, await readDomainState(ctx, connection, domain));
  const xml = await readDomainXml(ctx, connection, domain);
  const definition = await parseDomainXml(xml);
  return { request, xml, definition, runs: diskRuns(definition, request.base, request.outputDir) };
}

/**
 * Points the domain at the copies: each copied disk becomes a file disk of the output's format
 * with no backing chain, or over the same backing file when the copy kept the chain. The
 * previous definition is saved beside the outputs first (`DOMAIN.previous.xml`: `virsh define`
 * it to go back), then the new one is defined with libvirt's schema check.
 */
export async function updateDomain(ctx: RunContext, plan: DomainPlan, reports: readonly RunReport[], workDir: string): Promise<DomainUpdate> {
  const { connection, outputDir } = plan.request;
  if (outputDir === undefined) throw new SparsifyError('INTERNAL', '--update-domain without an output directory');
  const name = plan.definition.name;
  refuseUnlessShutOff(name, await readDomainState(ctx, connection, name));
  const sources = new Map<string, NewDiskSource>();
  plan.runs.forEach((run, i) => {
    const output = reports[i]?.output;
    if (!output) throw new SparsifyError('INTERNAL', `no output for disk ${run.disk.target}`);
    const keepsBacking = reports[i]?.chain?.handled === 'kept';
    sources.set(run.disk.target, { path: output.path, format: output.format, ...(keepsBacking ? { keepsBacking } : {}) });
  });
  const newXml = await rewriteDiskSources(plan.xml, sources);
  const savedAs = join(outputDir, `${name}.previous.xml`);
  await writeFile(savedAs, plan.xml);
  await fsyncFile(savedAs);
  const newPath = join(workDir, `${name}.xml`);
  await writeFile(newPath, newXml);
  await defineDomain(ctx, connection, newPath);
  return { previousXml: plan.xml, newXml, savedAs };
}
