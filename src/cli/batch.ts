/**
 * A batch: each domain is checked and planned (a refused one is a failed item, the others go
 * on), then every disk is one job under one task tree, `--jobs` at a time; a failed disk fails
 * alone. Then --update-domain for each domain whose disks all succeeded, the closing lines and
 * the JSON report. A batch of one item keeps that item's own error and exit code (a running
 * domain: 4); a larger batch with any failure exits EXIT.SOME_FAILED.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { batchLines, batchTotal, type BatchReport, type DiskOutcome, type DomainOutcome } from '../batch/batch-report.js';
import { defaultJobs } from '../batch/jobs.js';
import type { RunContext } from '../context.js';
import { EXIT, cancelledError, isSparsifyError } from '../errors.js';
import { sparsifyJob } from '../index.js';
import { runJobs } from '../batch/run-jobs.js';
import { planDomain, updateDomain, type DomainPlan } from '../libvirt/domain-run.js';
import type { DomainDisk } from '../libvirt/domain-xml.js';
import type { Options } from '../options.js';
import { openJsonReportFile, type JsonReportFile } from '../report/report-files.js';
import { explainSystemError } from '../util/errno.js';
import { VERSION } from '../version.js';
import type { BatchCommand } from './batch-options.js';
import { chooseView } from './output.js';
import type { Presentation } from './parse-options.js';

/** One disk of the batch: its run, and its domain's plan when it has one. */
interface Unit {
  readonly options: Options;
  readonly plan?: DomainPlan;
  readonly disk?: DomainDisk;
}

/** Runs the batch; returns the exit code, or throws the error of a batch of one. */
export async function runBatch(ctx: RunContext, command: BatchCommand, presentation: Presentation): Promise<number> {
  const json = command.jsonFile ? await openJsonReportFile(command.jsonFile) : undefined;
  let ok = false;
  try {
    const code = await runItems(ctx, command, presentation, json);
    ok = true;
    return code;
  } finally {
    await json?.close(!ok);
  }
}

async function runItems(ctx: RunContext, command: BatchCommand, presentation: Presentation, json: JsonReportFile | undefined): Promise<number> {
  const single = command.items.length === 1;
  const domains: DomainOutcome[] = [];
  const units: Unit[] = [];
  for (const item of command.items) {
    if (item.kind === 'disk') {
      units.push({ options: item.options });
      continue;
    }
    try {
      const plan = await planDomain(ctx, item.request);
      for (const s of plan.definition.skipped) ctx.log.info(`${plan.definition.name}: ${s.target} left alone: ${s.reason}`);
      units.push(...plan.runs.map((run) => ({ options: run.options, plan, disk: run.disk })));
    } catch (err) {
      if (single || isSparsifyError(err, 'CANCELLED')) throw err;
      domains.push({ name: item.request.domain, connection: item.request.connection.uri ?? null, status: 'failed', error: oneLine(err), skipped: [] });
    }
  }
  const outcomes = await runUnits(ctx, units, command.jobs ?? defaultJobs(units.length), presentation);
  if (ctx.signal.aborted) throw cancelledError(ctx.signal);
  if (single && outcomes.length === 1 && outcomes[0]!.error !== undefined) throw outcomes[0]!.failure;
  const disks = outcomes.map((o) => o.outcome);
  domains.push(...(await finishDomains(ctx, units, disks)));
  if (!presentation.quiet) process.stdout.write(`\n${batchLines(domains, disks).join('\n')}\n`);
  const report: BatchReport = { tool: 'sparsify', version: VERSION, domains, disks, total: batchTotal(disks) };
  await json?.write(`${JSON.stringify(report, null, 2)}\n`);
  const failed = report.total.failed > 0 || domains.some((d) => d.status === 'failed');
  return failed ? EXIT.SOME_FAILED : EXIT.OK;
}

/** Every unit as a job under one tree, `jobs` at a time; each one's outcome, failures included. */
async function runUnits(ctx: RunContext, units: readonly Unit[], jobs: number, presentation: Presentation) {
  const view = chooseView(presentation, undefined);
  const progress = view.renderer === 'silent' ? {} : { progress: view.renderer === 'default' ? ('bar' as const) : ('lines' as const) };
  const titled = units.map((unit) => {
    const job = sparsifyJob(unit.options, ctx, view.ui);
    return { job, title: unit.plan ? `${unit.plan.definition.name}/${unit.disk!.target}: ${job.title}` : job.title };
  });
  const results = await runJobs(titled, jobs, view.renderer, progress);
  return results.map((result, i) => {
    const unit = units[i]!;
    const where = { ...(unit.plan ? { domain: unit.plan.definition.name, target: unit.disk!.target } : {}), source: unit.options.input };
    if (result.ok) return { outcome: { ...where, status: 'done' as const, report: result.report } };
    const error = oneLine(result.error);
    return { outcome: { ...where, status: 'failed' as const, error }, failure: result.error, error };
  });
}

/** Each planned domain's outcome; --update-domain for those whose every disk is done. */
async function finishDomains(ctx: RunContext, units: readonly Unit[], disks: readonly DiskOutcome[]): Promise<DomainOutcome[]> {
  const plans = [...new Set(units.flatMap((u) => (u.plan ? [u.plan] : [])))];
  const out: DomainOutcome[] = [];
  for (const plan of plans) {
    const mine = units.flatMap((u, i) => (u.plan === plan ? [disks[i]!] : []));
    const base = { name: plan.definition.name, ...(plan.definition.uuid ? { uuid: plan.definition.uuid } : {}), connection: plan.request.connection.uri ?? null, skipped: plan.definition.skipped };
    const failed = mine.filter((d) => d.status === 'failed');
    if (failed.length) {
      const note = plan.request.updateDomain ? '; its definition was not changed' : '';
      out.push({ ...base, status: 'failed', error: `${failed.length} of ${mine.length} disks failed${note}` });
      continue;
    }
    if (!plan.request.updateDomain) {
      out.push({ ...base, status: 'done' });
      continue;
    }
    const work = await mkdtemp(join(tmpdir(), 'sparsify-domain-'));
    try {
      const u = await updateDomain(ctx, plan, mine.map((d) => d.report!), work);
      ctx.log.info(`${plan.definition.name}: now uses the new disks; its previous definition is in ${u.savedAs}`);
      out.push({ ...base, status: 'done', update: { previousDefinition: u.previousXml, definition: u.newXml, previousDefinitionFile: u.savedAs } });
    } catch (err) {
      out.push({ ...base, status: 'failed', error: `--update-domain: ${oneLine(err)}` });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  return out;
}

function oneLine(err: unknown): string {
  const e = explainSystemError(err);
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}
