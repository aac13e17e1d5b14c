import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { NOT_STARTED, runJobs } from '../../../src/batch/run-jobs.js';
import type { Job } from '../../../src/modes/job.js';
import type { RunReport } from '../../../src/report/types.js';

/** Jobs of one step that count how many run at once; `fail` names the ones that throw. */
function jobs(count: number, fail: readonly number[] = []) {
  const state = { active: 0, peak: 0, started: [] as number[] };
  const list = Array.from({ length: count }, (_, i) => {
    const job: Job = {
      title: `disk ${i}`,
      steps: ['work'],
      run: async (steps) => {
        state.started.push(i);
        await steps.run('work', async () => {
          state.active++;
          state.peak = Math.max(state.peak, state.active);
          await sleep(40);
          state.active--;
          if (fail.includes(i)) throw new Error(`disk ${i} broke`);
        });
        return { input: { path: `/d${i}` } } as unknown as RunReport;
      },
    };
    return { title: job.title, job };
  });
  return { list, state };
}

describe('runJobs', () => {
  it.each([1, 2, 3])('runs at most %i jobs at once, and every job', async (concurrency) => {
    const { list, state } = jobs(6);
    const results = await runJobs(list, concurrency, 'silent');
    expect(state.peak).toBe(concurrency);
    expect(results.map((r) => r.ok && (r.report.input.path as string))).toEqual(['/d0', '/d1', '/d2', '/d3', '/d4', '/d5']);
  });

  it('a failing job fails alone: the others run and report, its error is its own', async () => {
    const { list, state } = jobs(4, [1]);
    const results = await runJobs(list, 2, 'silent');
    expect(state.started.sort()).toEqual([0, 1, 2, 3]);
    expect(results.map((r) => r.ok)).toEqual([true, false, true, true]);
    expect(results[1]).toMatchObject({ ok: false, error: { message: 'disk 1 broke' } });
  });

  it('once the stop signal fires, no further job starts: the running ones finish, the rest are NOT_STARTED', async () => {
    const { list, state } = jobs(5);
    const stop = new AbortController();
    const first = list[0]!.job;
    list[0] = { ...list[0]!, job: { ...first, run: async (steps) => {
      const report = await first.run(steps);
      stop.abort();
      return report;
    } } };
    const results = await runJobs(list, 2, 'silent', {}, undefined, stop.signal);
    expect(state.started.sort()).toEqual([0, 1]);
    expect(results.map((r) => r.ok)).toEqual([true, true, false, false, false]);
    expect(results[2]).toMatchObject({ ok: false, error: NOT_STARTED });
  });
});
