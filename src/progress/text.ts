/** Progress in words for people (the task tree, plain lines), and how often to show it. */
import { humanBytes } from '../util/size.js';
import type { Progress } from './meter.js';

/** `1.2 GiB of 3.5 GiB (34%), 250 MiB/s, 0:09 left`; the rate and time left once they are known. */
export function progressText(p: Progress): string {
  const parts = [`${humanBytes(p.doneBytes)} of ${humanBytes(p.totalBytes)} (${percentOf(p)}%)`];
  if (p.bytesPerSecond !== undefined) parts.push(`${humanBytes(Math.round(p.bytesPerSecond))}/s`);
  if (p.etaSeconds !== undefined && p.doneBytes < p.totalBytes) parts.push(`${clockTime(p.etaSeconds)} left`);
  return parts.join(', ');
}

/** Whole percent done, rounded down (100 only when done); an empty phase is 100%. */
export function percentOf(p: Pick<Progress, 'doneBytes' | 'totalBytes'>): number {
  return p.totalBytes > 0 ? Math.min(100, Math.floor((p.doneBytes * 100) / p.totalBytes)) : 100;
}

/** Seconds as m:ss, or h:mm:ss from an hour. */
export function clockTime(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** Lets through the first progress, the finished one, and otherwise one per `everyMs` of the meter's clock. */
export class ProgressThrottle {
  readonly #everyMs: number;
  #lastMs: number | undefined;
  #finishedShown = false;

  constructor(everyMs: number) {
    this.#everyMs = everyMs;
  }

  /** Whether `p` should be shown; if so, it counts as shown. */
  due(p: Progress): boolean {
    const finished = p.doneBytes >= p.totalBytes;
    if (finished ? this.#finishedShown : this.#lastMs !== undefined && p.atMs - this.#lastMs < this.#everyMs) return false;
    this.#lastMs = p.atMs;
    this.#finishedShown = finished;
    return true;
  }
}
