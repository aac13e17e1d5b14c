/**
 * A batch: each domain is checked and planned (a refused one is a failed item, the others go
 * on), then every disk is one job under one task tree, `--jobs` at a time; a failed disk fails
 * alone. Then --update-domain for each domain whose disks all succeeded, the closing lines and
 * the JSON report. A batch of one item keeps that item's own error and exit code (a running
 * domain: 4); a larger batch with any failure exits EXIT.SOME_FAILED.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchMachineLines } from '../batch/batch-machine-lines.js';
import { BatchProgress, batchProgressLine } from '../batch/batch-progress.js';
import { batchLines, batchTotal, diskLabel, domainLines, reclaimedBytesOf, type BatchItem, type BatchReport, type DiskOutcome, type DomainOutcome } from '../batch/batch-report.js';
import { BatchJournal, batchId, journalDir } from '../batch/journal.js';
import { diskKey, recordDone, resumeVerdict, type ResumeVerdict } from '../batch/resume.js';
import { defaultJobs } from '../batch/jobs.js';
import type { RunContext } from '../context.js';
import { EXIT, SparsifyError, cancelledError, isSparsifyError } from '../errors.js';
import { sparsifyJob } from '../index.js';
import { NOT_STARTED, runJobs, type JobResult } from '../batch/run-jobs.js';
import { listedDomainRequests } from '../libvirt/all-domains.js';
import { planDomain, updateDomain, type DomainPlan } from '../libvirt/domain-run.js';
import type { DomainDisk } from '../libvirt/domain-xml.js';
import type { Options } from '../options.js';
import { openJsonReportFile, openMachineLinesFile, refuseReportOverImages, type JsonReportFile, type MachineLinesFile } from '../report/report-files.js';
import { explainSystemError } from '../util/errno.js';
import { VERSION } from '../version.js';
import type { BatchCommand } from './batch-options.js';
import { chooseView } from './output.js';
import type { LineSink } from '../report/machine-readable.js';
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
  const single = command.items.length === 1 && !command.allDomains;
  const listed = command.allDomains ? await listedDomainRequests(ctx, command.allDomains) : [];
  const items: BatchItem[] = [...listed.map((request) => ({ kind: 'domain' as const, request, listed: true })), ...command.items];
  const domains: DomainOutcome[] = [];
  const units: Unit[] = [];
  for (const item of items) {
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
      // --all-domains takes what can be done now: a running guest or one with no disk to take is not a failure.
      const skip = item.listed === true && (isSparsifyError(err, 'DOMAIN_ACTIVE') || isSparsifyError(err, 'UNSUPPORTED'));
      domains.push({ name: item.request.domain, connection: item.request.connection.uri ?? null, status: skip ? 'skipped' : 'failed', error: oneLine(err), skipped: [] });
    }
  }
  if (command.jsonFile) await refuseReportOverImages(command.jsonFile, units.flatMap(imagesOf));
  const machine = presentation.machineReadable ? await openMachineLinesFile(presentation.machineReadable, units.flatMap(imagesOf)) : undefined;
  try {
    return await runPlanned(ctx, command, presentation, { units, domains, single, json, machine });
  } finally {
    await machine?.close();
  }
}

/** What a batch has once its domains are planned. */
interface Planned {
  readonly units: readonly Unit[];
  /** The domains refused or skipped while planning; the others are added at the end. */
  readonly domains: DomainOutcome[];
  readonly single: boolean;
  readonly json: JsonReportFile | undefined;
  readonly machine: MachineLinesFile | undefined;
}

async function runPlanned(ctx: RunContext, command: BatchCommand, presentation: Presentation, planned: Planned): Promise<number> {
  const { units, domains, single, json, machine } = planned;
  const journal = await BatchJournal.open(journalDir(), batchId(describeBatch(command)), command.resume);
  if (command.resume && !journal.found) ctx.log.info('--resume: no journal of an earlier run of this batch: every disk runs');
  if (!command.resume && journal.found) ctx.log.info('an earlier run of this batch was cut short: this run does every disk again (--resume would go on from it)');
  // Ctrl-C, or a --machine-readable reader gone: no further disk starts.
  const stop = machine ? AbortSignal.any([ctx.signal, machine.failed]) : ctx.signal;
  const { outcomes, lines } = await runUnits(ctx, units, command.jobs, presentation, journal, machine?.sink, stop);
  if (ctx.signal.aborted) throw interrupted(ctx.signal, journal);
  if (single && outcomes.length === 1 && outcomes[0]!.error !== undefined) throw outcomes[0]!.failure;
  const disks = outcomes.map((o) => o.outcome);
  domains.push(...(await finishDomains(ctx, units, disks)));
  if (lines) domainLines(domains).forEach((line) => lines.message(line));
  else if (!presentation.quiet) process.stdout.write(`\n${batchLines(domains, disks).join('\n')}\n`);
  const report: BatchReport = { tool: 'sparsify', version: VERSION, domains, disks, total: batchTotal(disks) };
  lines?.total(report.total);
  await json?.write(`${JSON.stringify(report, null, 2)}\n`);
  const failed = report.total.failed > 0 || domains.some((d) => d.status === 'failed');
  const note = `The journal of this batch is ${journal.path}: the same command with --resume redoes only what did not finish.`;
  if (failed) (lines ? lines.message(note) : ctx.log.info(note));
  else await journal.remove();
  if (machine?.failure()) throw machine.failure();
  return failed ? EXIT.SOME_FAILED : EXIT.OK;
}

/** A unit's images, which --json must not be. */
function imagesOf(unit: Unit): [string, string][] {
  const o = unit.options;
  const input: [string, string] = [`the input image ${o.input}`, o.input];
  return o.mode === 'copy' ? [input, [`the output image ${o.output}`, o.output]] : [input];
}

/**
 * What identifies a batch across runs (its journal's name): mode, outputs, domains and disks in
 * order; --all-domains by its connection and filters, not by the domains it found.
 */
function describeBatch(command: BatchCommand): unknown {
  const all = command.allDomains;
  const head = all ? [['all-domains', all.request.connection.uri ?? null, all.filters, all.request.base.mode, all.request.outputDir ?? null]] : [];
  return [...head, ...command.items.map((item) =>
    item.kind === 'domain'
      ? ['domain', item.request.connection.uri ?? null, item.request.domain, item.request.base.mode, item.request.outputDir ?? null]
      : ['disk', item.options.input, item.options.mode === 'copy' ? item.options.output : null],
  )];
}

interface UnitResult {
  readonly outcome: DiskOutcome;
  readonly failure?: unknown;
  readonly error?: string;
}

/**
 * Every unit an earlier run did not finish as a job under one tree, `jobs` at a time, each
 * recorded in the journal once done; each unit's outcome, failures and earlier runs' included,
 * and the batch's machine-readable lines when `machine` is given.
 */
async function runUnits(ctx: RunContext, units: readonly Unit[], jobs: number | undefined, presentation: Presentation, journal: BatchJournal, machine: LineSink | undefined, stop: AbortSignal) {
  const where = (unit: Unit) => ({ ...(unit.plan ? { domain: unit.plan.definition.name, target: unit.disk!.target } : {}), source: unit.options.input });
  const keys = units.map((unit) => diskKey(unit.options, where(unit)));
  const verdicts: ResumeVerdict[] = [];
  for (const [i, unit] of units.entries()) verdicts.push(await resumeVerdict(journal, keys[i]!, unit.options));
  const results: UnitResult[] = units.map((unit, i) => earlierOutcome(ctx, where(unit), verdicts[i]!));
  const toRun = units.flatMap((unit, i) => (verdicts[i]!.kind === 'run' ? [i] : []));
  // Each unit run here weighed by its size on the host (the copy and the trim walk what is allocated).
  const weights = await Promise.all(units.map((unit, i) => (toRun.includes(i) ? stat(unit.options.input).then((st) => st.blocks * 512, () => 0) : 0)));
  const lines = machine ? new BatchMachineLines(machine, weights) : undefined;
  lines?.begin(results.map((r) => r.outcome), units.map((_, i) => !toRun.includes(i)));
  const view = chooseView(presentation, machine);
  const progress = view.renderer === 'silent' ? {} : { progress: view.renderer === 'default' ? ('bar' as const) : ('lines' as const) };
  const titled = toRun.map((i) => {
    const unit = units[i]!;
    const job = sparsifyJob(unit.options, ctx, lines ? lines.taskUi(i) : view.ui, recordDone(journal, keys[i]!, unit.options));
    return { job, title: unit.plan ? `${unit.plan.definition.name}/${unit.disk!.target}: ${job.title}` : job.title };
  });
  const meter = batchMeter(toRun.map((i) => weights[i]!), toRun, results);
  const outcomeOf = (i: number, result: JobResult): UnitResult =>
    result.ok
      ? { outcome: { ...where(units[i]!), status: 'done', report: result.report } }
      : { outcome: { ...where(units[i]!), status: 'failed', error: oneLine(result.error) }, failure: result.error, error: oneLine(result.error) };
  const onSettled = (n: number, result: JobResult) => {
    const state = meter.settle(n, Date.now(), result.ok ? reclaimedBytesOf(result.report) : undefined);
    lines?.settled(toRun[n]!, outcomeOf(toRun[n]!, result).outcome, state);
    // Plain lines only: the task tree of a terminal redraws over anything else written.
    if (view.renderer === 'simple') ctx.log.info(batchProgressLine(state));
  };
  const ran = await runJobs(titled, jobs ?? defaultJobs(Math.max(1, toRun.length)), view.renderer, progress, onSettled, stop);
  ran.forEach((result, n) => (results[toRun[n]!] = outcomeOf(toRun[n]!, result)));
  return { outcomes: results, lines };
}

/** A unit's outcome before anything runs: done by an earlier run, refused, or (to run) a placeholder. */
function earlierOutcome(ctx: RunContext, where: Pick<DiskOutcome, 'domain' | 'target' | 'source'>, verdict: ResumeVerdict): UnitResult {
  if (verdict.kind === 'done') {
    ctx.log.info(`${diskLabel(where)}: done by an earlier run of this batch, not run again`);
    return { outcome: { ...where, status: 'done', resumed: true, report: verdict.report } };
  }
  const error = verdict.kind === 'refuse' ? verdict.error : NOT_STARTED.message;
  return { outcome: { ...where, status: 'failed', error }, failure: new SparsifyError('BAD_PATH', error), error };
}

/** The batch meter: the units to run weighed by `weights`, the others settled. */
function batchMeter(weights: readonly number[], toRun: readonly number[], results: readonly UnitResult[]): BatchProgress {
  const settled = results.filter((_, i) => !toRun.includes(i)).map((r) => r.outcome);
  const done = settled.filter((d) => d.status === 'done');
  return new BatchProgress(weights, Date.now(), {
    finished: settled.length,
    failed: settled.length - done.length,
    reclaimedBytes: done.reduce((sum, d) => sum + reclaimedBytesOf(d.report!), 0),
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

/**
 * A batch stopped by SIGINT/SIGTERM: virt-sparsify's one line, and a hint that says how to go
 * on (the disks finished are in the journal, which --resume reads).
 */
function interrupted(signal: AbortSignal, journal: BatchJournal): SparsifyError {
  const cancelled = cancelledError(signal);
  const hint =
    journal.doneCount > 0
      ? `${journal.doneCount} finished disk${journal.doneCount === 1 ? ' is' : 's are'} recorded in ${journal.path}: the same command with --resume goes on from there`
      : 'no disk had finished: run the same command again';
  return new SparsifyError('CANCELLED', cancelled.message, { hint, cause: cancelled });
}

function oneLine(err: unknown): string {
  const e = explainSystemError(err);
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}
