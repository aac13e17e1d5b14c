/**
 * Progress of a batch as a whole: disks finished, bytes reclaimed so far and the time left.
 * The time left weighs each disk by its size on the host when the batch starts (the copy and
 * the trim walk what is allocated), so that a batch of one large and many small disks is not
 * called nearly done after the small ones. Pure: sizes and clock readings in, lines out.
 */
import { clockTime } from '../progress/text.js';
import { humanBytes } from '../util/size.js';

/** The batch's state after a disk finished. */
export interface BatchProgressState {
  readonly finished: number;
  readonly failed: number;
  readonly disks: number;
  readonly reclaimedBytes: number;
  /** Undefined until a disk that ran in this process finished. */
  readonly etaSeconds?: number;
}

/** Counts finished disks; `weights[i]` is the size on the host of the i-th disk run here. */
export class BatchProgress {
  readonly #weights: readonly number[];
  readonly #startMs: number;
  readonly #disks: number;
  #finished = 0;
  #failed = 0;
  #reclaimedBytes = 0;
  #doneWeight = 0;
  #leftWeight: number;

  /**
   * `weights`: the disks this process runs; `before`: those settled without running (done by an
   * earlier run of the batch, or refused), with what the done ones reclaimed.
   */
  constructor(weights: readonly number[], startMs: number, before: { finished: number; failed: number; reclaimedBytes: number } = { finished: 0, failed: 0, reclaimedBytes: 0 }) {
    this.#weights = weights;
    this.#startMs = startMs;
    this.#disks = weights.length + before.finished;
    this.#finished = before.finished;
    this.#failed = before.failed;
    this.#reclaimedBytes = before.reclaimedBytes;
    this.#leftWeight = weights.reduce((a, b) => a + b, 0);
  }

  /** Disk `index` finished at `nowMs`: done with `reclaimedBytes`, or failed (undefined). */
  settle(index: number, nowMs: number, reclaimedBytes: number | undefined): BatchProgressState {
    const weight = this.#weights[index] ?? 0;
    this.#finished++;
    if (reclaimedBytes === undefined) this.#failed++;
    else this.#reclaimedBytes += reclaimedBytes;
    this.#doneWeight += weight;
    this.#leftWeight -= weight;
    const elapsedSeconds = (nowMs - this.#startMs) / 1000;
    const eta = this.#doneWeight > 0 ? (elapsedSeconds * this.#leftWeight) / this.#doneWeight : undefined;
    return {
      finished: this.#finished,
      failed: this.#failed,
      disks: this.#disks,
      reclaimedBytes: this.#reclaimedBytes,
      ...(eta !== undefined ? { etaSeconds: eta } : {}),
    };
  }
}

/** `Batch: 2 of 5 disks finished (1 failed), 310 MiB reclaimed so far, about 1:05 left`. */
export function batchProgressLine(s: BatchProgressState): string {
  const failed = s.failed ? ` (${s.failed} failed)` : '';
  const left = s.finished < s.disks && s.etaSeconds !== undefined ? `, about ${clockTime(s.etaSeconds)} left` : '';
  return `Batch: ${s.finished} of ${s.disks} disks finished${failed}, ${humanBytes(s.reclaimedBytes)} reclaimed so far${left}`;
}

