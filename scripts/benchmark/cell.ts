/**
 * One cell of the matrix (an image, an input format, an output kind): every peer run `runs`
 * times in rotated order, each peer's first good output checked (untimed) before it is deleted.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { checkOutput, type CheckResult } from './check.js';
import type { BenchImage, ProfileName } from './images.js';
import { measure, timeSync, type Measurement } from './measure.js';
import { outputFormat, type OutputKind, type Peer, type PeerName, type RunContext } from './peers.js';
import { rotated } from './stats.js';

export interface Cell {
  /** "little/qcow2/zstd": profile/input format/output kind, what --cells matches. */
  readonly id: string;
  readonly profile: ProfileName;
  readonly image: BenchImage;
  readonly floor: BenchImage;
  readonly inputFormat: 'raw' | 'qcow2';
  readonly kind: OutputKind;
}

export interface RunRecord extends Measurement {
  readonly round: number;
  /**
   * Seconds of the `sync` run right after the command (untimed in wallSeconds): the writeback of
   * what it left dirty. wall + sync is the time until its output is on disk.
   */
  readonly syncSeconds?: number;
  /** 0-based place in its round. */
  readonly position: number;
  /** Allocated bytes of the output after the run (in place: of the rewritten copy). */
  readonly outputBytes: number;
  /** In place only: allocated bytes of the copy before the run. */
  readonly beforeBytes?: number;
  /** sparsify rows: seconds per phase, from its --json report ("volume /dev/sda1", "launch" …). */
  readonly phases?: Readonly<Record<string, number>>;
}

export interface RowResult {
  readonly peer: PeerName;
  readonly argv: readonly string[];
  readonly runs: RunRecord[];
  /** ok; failed (non-zero exit: later runs skipped); mismatch (wrong output: its times do not count). */
  status: 'ok' | 'failed' | 'mismatch';
  check?: CheckResult;
  log?: string;
}

export interface CellSettings {
  readonly runDir: string;
  readonly runs: number;
  readonly keep: boolean;
  readonly sparsify: readonly string[];
  readonly say: (line: string) => void;
}

function allocated(path: string): number {
  try { return statSync(path).blocks * 512; } catch { return 0; }
}

function readWholeFile(path: string): void {
  // Page cache warm for every run, the first included.
  execFileSync('cat', [path], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Runs every applicable peer of a cell; returns one row per peer. */
export async function runCell(cell: Cell, peers: readonly Peer[], s: CellSettings): Promise<RowResult[]> {
  const safeId = cell.id.replaceAll('/', '-');
  const input = cell.image.path(cell.inputFormat);
  const ctxOf = (peer: Peer): RunContext => ({
    kind: cell.kind,
    input,
    inputFormat: cell.inputFormat,
    floorInput: cell.floor.path(cell.inputFormat),
    output: join(s.runDir, `out-${safeId}-${peer.name}.${cell.kind === 'in-place' ? cell.inputFormat : outputFormat({ kind: cell.kind, inputFormat: cell.inputFormat })}`),
    virtualBytes: cell.image.virtualBytes,
    sparsify: s.sparsify,
    report: join(s.runDir, `${safeId}-${peer.name}.report.json`),
  });
  readWholeFile(input);
  if (peers.some((p) => p.name === 'floor')) readWholeFile(cell.floor.path(cell.inputFormat));
  const rows = new Map(peers.map((p) => [p.name, { peer: p.name, argv: p.argv(ctxOf(p)), runs: [], status: 'ok' } as RowResult]));
  for (let round = 0; round < s.runs; round++) {
    for (const [position, peer] of rotated(peers, round).entries()) {
      const row = rows.get(peer.name)!;
      if (row.status !== 'ok') continue;
      const ctx = ctxOf(peer);
      rmSync(ctx.output, { force: true });
      let beforeBytes: number | undefined;
      if (cell.kind === 'in-place') {
        execFileSync('cp', ['--sparse=always', input, ctx.output]);
        // Written back first: ext4 counts delayed-allocation reservations in st_blocks.
        execFileSync('sync', [ctx.output]);
        beforeBytes = allocated(ctx.output);
      }
      for (const argv of peer.prepare?.(ctx) ?? []) execFileSync(argv[0]!, argv.slice(1));
      // The previous run's writeback is not billed to this one.
      execFileSync('sync');
      const tmp = join(s.runDir, `tmp-${safeId}-${peer.name}`);
      mkdirSync(tmp, { recursive: true });
      const log = join(s.runDir, `${safeId}-${peer.name}-r${round}.log`);
      s.say(`${cell.id} round ${round + 1}/${s.runs}: ${peer.name}`);
      const m = await measure(row.argv, peer.env ?? {}, tmp, log);
      // Before anything else touches the disk: the writeback this run left behind.
      const syncSeconds = timeSync();
      rmSync(tmp, { recursive: true, force: true });
      const phases = peer.report && m.exitCode === 0 ? readPhases(ctx.report) : undefined;
      row.runs.push({ ...m, round, syncSeconds, position, outputBytes: allocated(ctx.output), ...(beforeBytes === undefined ? {} : { beforeBytes }), ...(phases ? { phases } : {}) });
      if (m.exitCode !== 0) {
        row.status = 'failed';
        row.log = log;
        s.say(`${cell.id}: ${peer.name} FAILED (exit ${m.exitCode}); log: ${log}\n${tailOf(log)}`);
      } else if (row.check === undefined) {
        row.check = await checkOutput(peer.check, {
          output: ctx.output,
          outputFormat: outputFormat(ctx),
          input,
          inputFormat: cell.inputFormat,
          floorInput: ctx.floorInput,
          manifest: cell.image.manifest(cell.inputFormat),
        });
        if (!row.check.ok) {
          row.status = 'mismatch';
          s.say(`${cell.id}: ${peer.name} output is WRONG: ${row.check.detail}`);
        }
      }
      if (!s.keep || round < s.runs - 1) rmSync(ctx.output, { force: true });
    }
  }
  return [...rows.values()];
}

/** Phase name → seconds from sparsify's --json report (`phases: [{name, ms}]`); undefined when unreadable. */
function readPhases(path: string): Record<string, number> | undefined {
  try {
    const report = JSON.parse(readFileSync(path, 'utf8')) as { phases?: { name: string; ms: number }[] };
    return Object.fromEntries((report.phases ?? []).map((p) => [p.name, p.ms / 1000]));
  } catch {
    return undefined;
  }
}

function tailOf(path: string): string {
  try { return readFileSync(path, 'utf8').trim().split('\n').slice(-5).map((l) => `  ${l}`).join('\n'); } catch { return ''; }
}
