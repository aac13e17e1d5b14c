/**
 * `sparsify -d DOMAIN`: the domain's disks, one job each under one task tree, one after the
 * other; then --update-domain; then each disk's summary and the domain's JSON report.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Listr } from 'listr2';
import type { RunContext } from '../context.js';
import { TASK_TREE_OPTIONS, jobTask, sparsifyJob, type RunReport } from '../index.js';
import { planDomain, updateDomain, type DomainPlan, type DomainUpdate } from '../libvirt/domain-run.js';
import { closingText } from '../report/summary.js';
import { VERSION } from '../version.js';
import type { DomainCommand } from './domain-options.js';
import { chooseView } from './output.js';
import type { Presentation } from './parse-options.js';

/** Runs every disk of the domain; throws the first failure (DOMAIN_ACTIVE before any disk is read). */
export async function runDomain(ctx: RunContext, command: DomainCommand, presentation: Presentation): Promise<number> {
  const plan = await planDomain(ctx, command.request);
  for (const s of plan.definition.skipped) ctx.log.info(`${plan.definition.name}: ${s.target} left alone: ${s.reason}`);
  const view = chooseView(presentation, undefined);
  const progress = view.renderer === 'silent' ? {} : { progress: view.renderer === 'default' ? ('bar' as const) : ('lines' as const) };
  const reports: RunReport[] = [];
  const tasks = plan.runs.map((run, i) =>
    jobTask(sparsifyJob(run.options, ctx, view.ui), { ...progress, onReport: (r) => (reports[i] = r) }),
  );
  await new Listr(tasks, { ...TASK_TREE_OPTIONS, renderer: view.renderer } as never).run();
  let update: DomainUpdate | undefined;
  if (command.request.updateDomain) {
    const work = await mkdtemp(join(tmpdir(), 'sparsify-domain-'));
    try {
      update = await updateDomain(ctx, plan, reports, work);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    ctx.log.info(`${plan.definition.name}: now uses the new disks; its previous definition is in ${update.savedAs}`);
  }
  if (!presentation.quiet) for (const r of reports) process.stdout.write(closingText(r));
  if (command.jsonFile) await writeFile(command.jsonFile, `${JSON.stringify(domainReport(plan, reports, update), null, 2)}\n`);
  return 0;
}

/** The --json document of a domain run: each disk's report, the disks left alone, the definition change. */
function domainReport(plan: DomainPlan, reports: readonly RunReport[], update: DomainUpdate | undefined) {
  const { definition, request } = plan;
  return {
    tool: 'sparsify',
    version: VERSION,
    domain: { name: definition.name, ...(definition.uuid ? { uuid: definition.uuid } : {}), connection: request.connection.uri ?? null },
    disks: plan.runs.map((run, i) => ({ target: run.disk.target, source: run.disk.path, format: run.disk.format, report: reports[i] })),
    skipped: definition.skipped,
    ...(update ? { update: { previousDefinition: update.previousXml, definition: update.newXml, previousDefinitionFile: update.savedAs } } : {}),
  };
}
