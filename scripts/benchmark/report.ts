/** The bench's results: per-row summaries, the terminal table and the JSON document. */
import type { Cell, RowResult } from './cell.js';
import type { BenchImage } from './images.js';
import { describeTimeRatio, durableSeconds, median, ratio } from './stats.js';

/** A row reduced to what the table shows; times from runs that exited 0 with a good output. */
export interface RowSummary {
  readonly peer: string;
  readonly status: RowResult['status'];
  readonly runsOk: number;
  readonly wallSeconds?: number;
  /** Median of wall + the sync after the run: until the output is on disk. */
  readonly durableSeconds?: number;
  readonly cpuSeconds?: number;
  /** Largest tree RSS over the runs. */
  readonly peakRssBytes?: number;
  readonly tmpPeakBytes?: number;
  readonly outputBytes?: number;
  /** In place: allocated bytes before the run (median). */
  readonly beforeBytes?: number;
  /** wall / sparsify's wall in the same cell (above 1: slower than sparsify). */
  readonly timeVsSparsify?: number;
  /** durable / sparsify's durable in the same cell. */
  readonly durableVsSparsify?: number;
  /** output bytes / sparsify's output bytes. */
  readonly sizeVsSparsify?: number;
  readonly match?: boolean;
  readonly check?: string;
  /** sparsify rows: the filesystem pass (its report's "volume …" phases), median seconds. */
  readonly volumePassSeconds?: number;
  /** sparsify rows: the appliance's launch (its report's phases named "…launch…"), median seconds. */
  readonly launchSeconds?: number;
}

/** Seconds of the phases whose name passes `test`; undefined when the run has no such phase. */
function phaseSeconds(phases: Readonly<Record<string, number>> | undefined, test: (name: string) => boolean): number | undefined {
  const matching = Object.entries(phases ?? {}).filter(([name]) => test(name));
  return matching.length === 0 ? undefined : matching.reduce((sum, [, seconds]) => sum + seconds, 0);
}

function definedMedian(values: readonly (number | undefined)[]): number | undefined {
  const present = values.filter((v): v is number => v !== undefined);
  return present.length === 0 ? undefined : median(present);
}

/** Medians per row, and the ratios against the sparsify row of the same cell. */
export function summarize(rows: readonly RowResult[]): RowSummary[] {
  const base = rows.map((row) => {
    const good = row.status === 'mismatch' ? [] : row.runs.filter((r) => r.exitCode === 0);
    return {
      peer: row.peer,
      status: row.status,
      runsOk: good.length,
      wallSeconds: definedMedian(good.map((r) => r.wallSeconds)),
      durableSeconds: definedMedian(good.map(durableSeconds)),
      cpuSeconds: definedMedian(good.map((r) => r.cpuSeconds)),
      peakRssBytes: good.length === 0 ? undefined : Math.max(...good.map((r) => r.treeRssBytes)),
      tmpPeakBytes: good.length === 0 ? undefined : Math.max(...good.map((r) => r.tmpPeakBytes)),
      outputBytes: definedMedian(good.map((r) => r.outputBytes)),
      beforeBytes: definedMedian(good.map((r) => r.beforeBytes)),
      match: row.check?.ok,
      check: row.check?.detail,
      volumePassSeconds: definedMedian(good.map((r) => phaseSeconds(r.phases, (name) => name.startsWith('volume ')))),
      launchSeconds: definedMedian(good.map((r) => phaseSeconds(r.phases, (name) => /launch/i.test(name)))),
    };
  });
  const sparsify = base.find((r) => r.peer === 'sparsify');
  return base.map((r) => ({
    ...r,
    timeVsSparsify: ratio(r.wallSeconds, sparsify?.wallSeconds),
    durableVsSparsify: ratio(r.durableSeconds, sparsify?.durableSeconds),
    sizeVsSparsify: ratio(r.outputBytes, sparsify?.outputBytes),
  }));
}

const mib = (bytes: number | undefined): string => (bytes === undefined ? '-' : (bytes / 2 ** 20).toFixed(1));
const fixed = (n: number | undefined, digits: number): string => (n === undefined ? '-' : n.toFixed(digits));

/** A short description of an image for the table header. */
export function describeImage(name: string, image: BenchImage, allocatedBytes: number): string {
  const s = image.spec;
  return `${name}: ${image.base}.{raw,qcow2}: virtual ${mib(image.virtualBytes)} MiB, GPT ${s.fs.join(',')}, `
    + `${s.fillMiB} MiB kept per filesystem, ${s.garbageMiB} MiB deleted per volume; allocated ${mib(allocatedBytes)} MiB, `
    + `live ${mib(image.liveBytes)} MiB (${((100 * image.liveBytes) / allocatedBytes).toFixed(0)} % of allocated)`;
}

/** The terminal table of one cell. */
export function formatCell(cell: Cell, runs: number, rows: readonly RowSummary[]): string {
  const inPlace = cell.kind === 'in-place';
  const phased = rows.some((r) => r.volumePassSeconds !== undefined || r.launchSeconds !== undefined);
  const head = ['peer', 'ok', 'wall s', ...(phased ? ['fs pass s', 'launch s'] : []), 'vs sparsify', 'durable s', 'vs sparsify', 'cpu s', 'peak RSS MiB', 'tmp MiB',
    inPlace ? 'before MiB' : 'output MiB', inPlace ? 'after MiB' : 'out/sparsify', 'match'];
  const versus = (r: RowSummary, value: number | undefined): string =>
    r.status === 'failed' ? 'FAILED' : r.status === 'mismatch' ? 'WRONG OUTPUT' : r.peer === 'sparsify' ? '(baseline)' : describeTimeRatio(value);
  const lines = rows.map((r) => [
    r.peer,
    `${r.runsOk}/${runs}`,
    fixed(r.wallSeconds, 2),
    ...(phased ? [fixed(r.volumePassSeconds, 2), fixed(r.launchSeconds, 2)] : []),
    versus(r, r.timeVsSparsify),
    fixed(r.durableSeconds, 2),
    versus(r, r.durableVsSparsify),
    fixed(r.cpuSeconds, 1),
    mib(r.peakRssBytes),
    mib(r.tmpPeakBytes),
    inPlace ? mib(r.beforeBytes) : mib(r.outputBytes),
    inPlace ? mib(r.outputBytes) : fixed(r.sizeVsSparsify, 2) + (r.sizeVsSparsify === undefined ? '' : 'x'),
    r.match === undefined ? '-' : r.match ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cols: string[]): string => cols.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [`${cell.id}  (${cell.profile} live data, ${cell.inputFormat} input, ${inPlace ? 'in place on a cp --sparse=always copy' : `${cell.kind} output`})`,
    fmt(head), ...lines.map(fmt)].join('\n');
}

export const TABLE_NOTES = [
  'wall, cpu: medians of the runs that exited 0 with a good output; cpu = user+sys of the command and every',
  'process it waited for (rusage). durable: median of wall + a sync timed right after the run (the bench',
  'syncs before each run, so that sync writes back only what the run left dirty): until the output is on',
  'disk. sparsify fsyncs its output before renaming it into place, so its sync is short; qemu-img convert',
  '(cache mode unsafe) and nbdcopy\'s --cache=unsafe destination return with their output still in the page',
  'cache. Each "vs sparsify" is the ratio of the column before it.',
  'peak RSS: the largest over the runs of the RSS summed over the process tree',
  '(sampled every 0.2 s; never below the largest single process). tmp: peak allocated bytes under the run\'s',
  'TMPDIR. output: allocated bytes. match: qemu-img compare with the input (floor: with the floor image), or, for',
  'sparsify and virt-sparsify, every kept file, the partition table and the swap headers checked against',
  'make-image\'s manifest; checked once per row, after its first run. floor: qemu-img convert -W of the same',
  'image built with no deleted data (writing the live data once). fs pass, launch (sparsify rows): medians of',
  'the phases in its --json report: the filesystem pass (every "volume …" phase, the appliance\'s launch',
  'included) and the appliance\'s launch alone (phases named "…launch…"); "-" when the run had none.',
].join('\n');
