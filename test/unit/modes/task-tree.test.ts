import { Listr, type ListrTask } from 'listr2';
import { describe, expect, it } from 'vitest';
import { SparsifyError } from '../../../src/errors.js';
import { runJob, type Job, type Steps } from '../../../src/modes/job.js';
import { TASK_TREE_OPTIONS, jobTask, runUnderTree } from '../../../src/modes/task-tree.js';
import type { RunReport } from '../../../src/report/types.js';

const MiB = 1024 * 1024;

/** A report that says which job made it and what its steps handed on. */
function reportOf(input: string, volumes: string[]): RunReport {
  const vs = volumes.map((name) => ({ name, type: 'ext4', offsetBytes: 0, sizeBytes: 1, action: 'map' as const, handled: 'h', reason: 'r', reclaimedBytes: 0 }));
  return { tool: 'sparsify', version: 'test', mode: 'copy', input: { path: input, format: 'raw', virtualSizeBytes: 1, allocatedBytes: 1 }, partitionTable: 'gpt', volumes: vs, warnings: [], phases: [], totalMs: 0 };
}

/** A job of three steps, the last a sub-step per volume; each step's value feeds the next. */
function diskJob(name: string, log: string[]): Job {
  return {
    title: name,
    steps: ['open', 'plan', 'overlay', 'pass'],
    async run(steps: Steps) {
      log.push(`${name}: start`);
      try {
        const disk = await steps.run('open', async () => ({ volumes: [`${name}1`, `${name}2`] }));
        const plans = await steps.run('plan', async (view) => {
          view.retitle(`plan: ${disk.volumes.length} volumes`);
          return disk.volumes.map((v) => `${v}:planned`);
        });
        steps.skip('overlay', 'nothing to mount');
        const done = await steps.each('pass', plans, (p) => p, async (p, view) => {
          view.retitle(`${p}: done`);
          log.push(`${name}: ${p}`);
          return p.replace('planned', 'done');
        });
        return reportOf(name, done);
      } finally {
        log.push(`${name}: released`);
      }
    },
  };
}

const silentTree = (tasks: ListrTask[]) => new Listr(tasks, { ...TASK_TREE_OPTIONS, renderer: 'silent' } as never);

describe('jobs under one listr2 task tree', () => {
  it('runs two jobs, one task each with their steps under it, values flowing from step to step', async () => {
    const log: string[] = [];
    const reports: RunReport[] = [];
    const tree = silentTree(['a', 'b'].map((n) => jobTask(diskJob(n, log), { onReport: (r) => reports.push(r) })));
    await tree.run();
    expect(reports.map((r) => [r.input.path, r.volumes.map((v) => v.name)])).toEqual([
      ['a', ['a1:done', 'a2:done']],
      ['b', ['b1:done', 'b2:done']],
    ]);
    expect(log).toEqual(['a: start', 'a: a1:planned', 'a: a2:planned', 'a: released', 'b: start', 'b: b1:planned', 'b: b2:planned', 'b: released']);
    const [a] = tree.tasks;
    expect(a!.title).toBe('a');
    const steps = a!.subtasks.filter((t) => t.hasTitle());
    expect(steps.map((t) => t.title)).toEqual(['open', 'plan: 2 volumes', 'overlay', 'pass']);
    expect(steps.map((t) => t.state)).toEqual(['COMPLETED', 'COMPLETED', 'SKIPPED', 'COMPLETED']);
    expect(steps[2]!.message.skip).toBe('nothing to mount');
    expect(steps[3]!.subtasks.filter((t) => t.hasTitle()).map((t) => t.title)).toEqual(['a1:planned: done', 'a2:planned: done']);
  });

  it('gives the same report run silently (the library) as under a tree', async () => {
    const silent = await runJob(diskJob('a', []));
    const run = runUnderTree(diskJob('a', []));
    await run.begin();
    await silentTree(run.tasks).run();
    expect(await run.report).toEqual(silent);
  });

  it("a failing step fails the tree with the script's error, only after the script released what it opened", async () => {
    const log: string[] = [];
    const job: Job = {
      title: 'x',
      steps: ['open', 'copy', 'verify'],
      async run(steps) {
        try {
          await steps.run('open', async () => 1);
          await steps.run('copy', async () => {
            throw new Error('disk full');
          });
          log.push('never');
          return reportOf('x', []);
        } catch (err) {
          await new Promise((r) => setTimeout(r, 50));
          log.push('released');
          throw new SparsifyError('NO_SPACE', `explained: ${(err as Error).message}`);
        }
      },
    };
    const run = runUnderTree(job);
    await run.begin();
    const tree = silentTree(run.tasks);
    await expect(tree.run().finally(() => log.push('tree ended'))).rejects.toThrow('explained: disk full');
    expect(log).toEqual(['released', 'tree ended']);
    expect(tree.tasks.map((t) => t.state)).toEqual(['COMPLETED', 'FAILED', 'WAITING', 'WAITING']);
    await expect(run.report).rejects.toThrow('explained: disk full');
  });

  it('a job refused before its first step rejects begin(), and no step has run', async () => {
    let opened = false;
    const job: Job = {
      title: 'refused',
      steps: ['open'],
      async run(steps) {
        throw new SparsifyError('USAGE', 'bad option');
        await steps.run('open', async () => void (opened = true));
      },
    };
    const run = runUnderTree(job);
    await expect(run.begin()).rejects.toThrow('bad option');
    expect(opened).toBe(false);
  });

  it('a script that ends between steps fails the step it did not reach', async () => {
    const job: Job = {
      title: 'j',
      steps: ['one', 'two'],
      async run(steps) {
        await steps.run('one', async () => 1);
        throw new SparsifyError('CANCELLED', 'cancelled');
      },
    };
    const run = runUnderTree(job);
    await run.begin();
    const tree = silentTree(run.tasks);
    await expect(tree.run()).rejects.toThrow('cancelled');
    expect(tree.tasks.slice(0, 2).map((t) => t.state)).toEqual(['COMPLETED', 'FAILED']);
  });

  it('a step the script passes over shows as skipped; a step it never declared is an internal error', async () => {
    const passOver: Job = { title: 'p', steps: ['one', 'two', 'three'], run: async (s) => (await s.run('three', async () => reportOf('p', []))) };
    const run = runUnderTree(passOver);
    await run.begin();
    const tree = silentTree(run.tasks);
    await tree.run();
    expect(tree.tasks.slice(0, 3).map((t) => t.state)).toEqual(['SKIPPED', 'SKIPPED', 'COMPLETED']);

    const undeclared: Job = { title: 'u', steps: ['one'], run: async (s) => (await s.run('other', async () => reportOf('u', []))) };
    const bad = runUnderTree(undeclared);
    await expect(bad.begin()).rejects.toMatchObject({ code: 'INTERNAL', message: 'u: step "other" is not declared, or comes out of order' });
  });

  it('shows progress in the step output as a bar, as plain figures, or not at all', async () => {
    const at = (atMs: number, doneBytes: number) => ({ doneBytes, totalBytes: 100 * MiB, atMs, ...(atMs > 0 ? { bytesPerSecond: MiB, etaSeconds: 50 } : {}) });
    const job = (): Job => ({
      title: 'c',
      steps: ['copy'],
      run: async (s) => s.run('copy', async (view) => (view.progress(at(0, 0)), view.progress(at(100, 10 * MiB)), view.progress(at(1200, 50 * MiB)), reportOf('c', []))),
    });
    const outputs: Record<string, string | undefined> = {};
    for (const progress of ['bar', 'lines', undefined] as const) {
      const run = runUnderTree(job(), progress ? { progress } : {});
      await run.begin();
      const tree = silentTree(run.tasks);
      await tree.run();
      outputs[String(progress)] = tree.tasks[0]!.output;
    }
    expect(outputs).toEqual({
      bar: `[${'#'.repeat(15)}${'-'.repeat(15)}] 50 MiB of 100 MiB (50%), 1.0 MiB/s, 0:50 left`,
      lines: '50 MiB of 100 MiB (50%), 1.0 MiB/s, 0:50 left',
      undefined: undefined,
    });
  });

  it('plain lines come at most one a second; the bar is redrawn more often', async () => {
    const seen: Record<string, string[]> = { bar: [], lines: [] };
    for (const progress of ['bar', 'lines'] as const) {
      const job: Job = {
        title: 'c',
        steps: ['copy'],
        run: async (s) =>
          s.run('copy', async (view) => {
            for (let ms = 0; ms <= 3000; ms += 100) view.progress({ doneBytes: ms, totalBytes: 3000, atMs: ms });
            return reportOf('c', []);
          }),
      };
      const run = runUnderTree(job, { progress });
      await run.begin();
      const tree = silentTree(run.tasks);
      tree.tasks[0]!.on('OUTPUT' as never, (o: string) => seen[progress]!.push(o));
      await tree.run();
    }
    expect(seen.lines).toEqual(['0 B of 2.9 KiB (0%)', '1000 B of 2.9 KiB (33%)', '2.0 KiB of 2.9 KiB (66%)', '2.9 KiB of 2.9 KiB (100%)']);
    expect(seen.bar!.length).toBe(11); // every 300 ms: the first update at least 250 ms after the last shown
  });

});
