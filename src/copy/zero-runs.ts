import type { Range } from '../disk/extent-set.js';

/**
 * Turns the zero parts of chunks that finish in any order into maximal zero runs, in disk order,
 * so that a run of skipped space, zero extents and all-zero granules across many chunks becomes
 * one write-zeroes. A run is emitted as soon as something that is not zero is known to follow it.
 */
export class ZeroRunMerger {
  readonly #emit: (run: Range) => void;
  readonly #waiting = new Map<number, { span: Range; dataRuns: readonly Range[] }>();
  #next = 0;
  #open: Range | undefined;

  constructor(emit: (run: Range) => void) {
    this.#emit = emit;
  }

  /** Chunk `index` covers `span`; everything in it outside `dataRuns` (sorted) reads as zero. */
  complete(index: number, span: Range, dataRuns: readonly Range[]): void {
    this.#waiting.set(index, { span, dataRuns });
    for (let w = this.#waiting.get(this.#next); w; w = this.#waiting.get(this.#next)) {
      this.#waiting.delete(this.#next++);
      this.#take(w.span, w.dataRuns);
    }
  }

  /** Emits the run still open; call once after the last chunk. */
  finish(): void {
    if (this.#open) this.#emit(this.#open);
    this.#open = undefined;
  }

  #take(span: Range, dataRuns: readonly Range[]): void {
    let pos = span.start;
    for (const d of dataRuns) {
      this.#add(pos, d.start);
      pos = d.end;
    }
    this.#add(pos, span.end);
    if (this.#open && this.#open.end < span.end) {
      this.#emit(this.#open);
      this.#open = undefined;
    }
  }

  #add(start: number, end: number): void {
    if (end <= start) return;
    if (this.#open && this.#open.end === start) {
      this.#open = { start: this.#open.start, end };
      return;
    }
    if (this.#open) this.#emit(this.#open);
    this.#open = { start, end };
  }
}
