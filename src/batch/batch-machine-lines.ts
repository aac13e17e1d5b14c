/**
 * `--machine-readable` for a batch: the single run's lines (src/report/machine-readable.ts), one
 * task per disk, plus the batch as a whole.
 *
 * - `sparsify-batch disks=N`, then `sparsify-disk I LABEL` for each disk (I from 1, the order
 *   of the closing lines and of --json's `disks`; LABEL `domain/target (path)` or the path).
 * - Disk I's own lines, exactly as a single run prints them, after `sparsify-task I `: its
 *   status messages, `DONE/TOTAL` and `sparsify-progress done=… total=…[ rate=… eta=…]`.
 * - When disk I ends: `sparsify-disk-done I reclaimed=BYTES[ resumed=1]` or
 *   `sparsify-disk-failed I ERROR`; then the batch's state,
 *   `sparsify-batch finished=F disks=N failed=X reclaimed=BYTES[ eta=SECONDS]`.
 * - The batch's progress as the unprefixed `DONE/TOTAL` a virt-sparsify reader already takes
 *   (whenever its whole percentage changes): each disk run weighed by its size on the host, as
 *   the time left is (src/batch/batch-progress.ts), a copy counted by its progress so far.
 * - Last, `sparsify-batch-total disks=N done=D failed=X reclaimed=BYTES`.
 *
 * Any other line is a free-text message, as in a single run (the journal's path, a domain
 * refused or skipped). Pure: lines go to a sink.
 */
import type { RunUi } from '../modes/ui.js';
import { machineReadableUi, type LineSink } from '../report/machine-readable.js';
import { percentOf } from '../progress/text.js';
import type { BatchProgressState } from './batch-progress.js';
import { diskLabel, reclaimedBytesOf, type BatchTotal, type DiskOutcome } from './batch-report.js';

export class BatchMachineLines {
  readonly #sink: LineSink;
  /** Per disk: its weight when this process runs it, else 0. */
  readonly #weights: readonly number[];
  readonly #fractions: number[];
  readonly #totalWeight: number;
  #lastPercent = -1;

  /** `weights[i]`: the size on the host of disk i when this process runs it (0: settled before). */
  constructor(sink: LineSink, weights: readonly number[]) {
    this.#sink = sink;
    this.#weights = weights;
    this.#fractions = weights.map(() => 0);
    this.#totalWeight = weights.reduce((a, b) => a + b, 0);
  }

  /** The task list; each disk settled before anything runs (earlier run, refused) with its result. */
  begin(disks: readonly DiskOutcome[], settled: readonly boolean[]): void {
    this.#line(`sparsify-batch disks=${disks.length}`);
    disks.forEach((d, i) => this.#line(`sparsify-disk ${i + 1} ${diskLabel(d)}`));
    disks.forEach((d, i) => settled[i] && this.#result(i, d));
  }

  /** Disk i's callbacks: its single-run lines, prefixed, and its share of the batch's progress. */
  taskUi(i: number): RunUi {
    const own = machineReadableUi({ write: (line) => this.#sink.write(`sparsify-task ${i + 1} ${line}`) });
    return {
      message: (text) => own.message!(text),
      progress: (p) => {
        own.progress!(p);
        this.#advance(i, p.totalBytes > 0 ? Math.min(1, p.doneBytes / p.totalBytes) : 1);
      },
    };
  }

  /** Disk i ended with `outcome`, leaving the batch in `state`. */
  settled(i: number, outcome: DiskOutcome, state: BatchProgressState): void {
    this.#result(i, outcome);
    this.#advance(i, 1);
    const eta = state.finished < state.disks && state.etaSeconds !== undefined ? ` eta=${Math.round(state.etaSeconds)}` : '';
    this.#line(`sparsify-batch finished=${state.finished} disks=${state.disks} failed=${state.failed} reclaimed=${state.reclaimedBytes}${eta}`);
  }

  /** A free-text message. */
  message(text: string): void {
    this.#line(text);
  }

  /** The closing line. */
  total(t: BatchTotal): void {
    this.#line(`sparsify-batch-total disks=${t.disks} done=${t.done} failed=${t.failed} reclaimed=${t.reclaimedBytes}`);
  }

  #result(i: number, d: DiskOutcome): void {
    if (d.status === 'done') this.#line(`sparsify-disk-done ${i + 1} reclaimed=${reclaimedBytesOf(d.report!)}${d.resumed ? ' resumed=1' : ''}`);
    else this.#line(`sparsify-disk-failed ${i + 1} ${d.error}`);
  }

  #advance(i: number, fraction: number): void {
    if (this.#totalWeight === 0 || fraction <= this.#fractions[i]!) return;
    this.#fractions[i] = fraction;
    const doneBytes = Math.round(this.#weights.reduce((sum, w, k) => sum + w * this.#fractions[k]!, 0));
    const percent = percentOf({ doneBytes, totalBytes: this.#totalWeight });
    if (percent === this.#lastPercent) return;
    this.#lastPercent = percent;
    this.#line(`${doneBytes}/${this.#totalWeight}`);
  }

  #line(text: string): void {
    this.#sink.write(`${text}\n`);
  }
}
