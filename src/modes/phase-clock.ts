import type { PhaseTiming } from '../report/types.js';

/** Times the phases of a run for the report. */
export class PhaseClock {
  readonly #start = performance.now();
  readonly #phases: PhaseTiming[] = [];

  /** Runs `fn` and records how long it took under `name`. */
  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.#phases.push({ name, ms: Math.round(performance.now() - t0) });
    }
  }

  phases(): PhaseTiming[] {
    return [...this.#phases];
  }

  totalMs(): number {
    return Math.round(performance.now() - this.#start);
  }
}
