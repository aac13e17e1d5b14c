/**
 * Several disks under one listr2 task tree, as a library user (or a later batch) runs them:
 * one task per job, built by the library (jobTask), run with the silent renderer, in process.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Listr } from 'listr2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TASK_TREE_OPTIONS, jobTask, makeContext, runSparsify, sparsifyJob, type RunReport } from '../../src/index.js';
import type { CopyOptions, InPlaceOptions } from '../../src/options.js';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File, verifyImage } from '../helpers/verify.js';

describeIntegration('jobs under one task tree', { tools: ['qemu-img', 'qemu-storage-daemon', 'losetup', 'fstrim', 'nbdfuse'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let work: string;
  const savedTmpdir = process.env.TMPDIR;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 8, garbageMiB: 16, seed: 5 });
    dir = await makeRunTmp();
    work = join(dir, 'work');
    await mkdir(work);
    // In place works in $TMPDIR: the test's own, so that what a job leaves behind is seen.
    process.env.TMPDIR = work;
  });
  afterAll(async () => {
    if (savedTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmpdir;
    await rm(dir, { recursive: true, force: true });
  });

  const common = { format: 'raw', ignore: [], zero: [], engine: 'auto', verify: true } as const;
  const copyOptions = (output: string): CopyOptions => ({
    ...common,
    mode: 'copy',
    input: image.imagePath,
    output,
    compress: false,
    tmp: { kind: 'dir', path: work },
    checkTmpdir: 'ignore',
    overwrite: false,
    noZero: false,
  });

  it('a copy and an in-place run, one task each under one tree: both reports, both disks right, nothing left', async () => {
    const inputSha = await sha256File(image.imagePath);
    const output = join(dir, 'out.raw');
    const inPlaceDisk = join(dir, 'in-place.raw');
    await copyImage(image.imagePath, inPlaceDisk);
    // The mount engine: its session (FUSE file, nbdfuse) must be closed by the job, under the tree.
    const inPlace: InPlaceOptions = { ...common, mode: 'in-place', input: inPlaceDisk, engine: 'mount' };
    const ctx = makeContext();
    const reports: RunReport[] = [];
    const tasks = [sparsifyJob(copyOptions(output), ctx), sparsifyJob(inPlace, ctx)].map((job) => jobTask(job, { onReport: (r) => reports.push(r) }));
    const tree = new Listr(tasks, { ...TASK_TREE_OPTIONS, renderer: 'silent' } as never);
    await tree.run();

    expect(tree.tasks.map((t) => t.title)).toEqual([`${image.imagePath} → ${output}`, inPlaceDisk]);
    expect(tree.tasks[0]!.subtasks.filter((t) => t.hasTitle()).map((t) => [t.title, t.state])).toEqual([
      ['Examine source disk', 'COMPLETED'],
      ['Examine filesystems: GPT, 1 volume', 'COMPLETED'],
      ['Create overlay file to protect source disk', 'SKIPPED'],
      ['Free space in each filesystem', 'COMPLETED'],
      ['Copy to destination and make sparse', 'COMPLETED'],
      ['Verify the output', 'COMPLETED'],
    ]);
    expect(reports.map((r) => [r.mode, r.input.path, r.verify?.ok])).toEqual([
      ['copy', image.imagePath, true],
      ['in-place', inPlaceDisk, true],
    ]);
    for (const r of reports) expect(r.volumes.map((v) => [v.name, v.type])).toEqual([['/dev/sda1', 'ext4']]);
    expect(reports[1]!.allocatedBytesAfter).toBeLessThan(reports[1]!.input.allocatedBytes);
    for (const disk of [output, inPlaceDisk]) expect((await verifyImage(disk, 'raw', image.manifestPath)).problems).toEqual([]);
    expect(await allocatedBytes(output)).toBeLessThan(await allocatedBytes(image.imagePath));
    expect(await sha256File(image.imagePath)).toBe(inputSha);
    expect(await leftoversUnder(work)).toEqual([]);
  });

  it('the second job failing fails the tree after the first succeeded, and leaves nothing of its own', async () => {
    const first = join(dir, 'first.raw');
    const taken = join(dir, 'taken.raw');
    await copyImage(image.imagePath, taken);
    const ctx = makeContext();
    const reports: RunReport[] = [];
    const tasks = [first, taken].map((out) => jobTask(sparsifyJob(copyOptions(out), ctx), { onReport: (r) => reports.push(r) }));
    const tree = new Listr(tasks, { ...TASK_TREE_OPTIONS, renderer: 'silent' } as never);
    await expect(tree.run()).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
    expect(tree.tasks.map((t) => t.state)).toEqual(['COMPLETED', 'FAILED']);
    expect(reports.map((r) => r.output?.path)).toEqual([first]);
    expect(await leftoversUnder(work)).toEqual([]);
  });

  it('runSparsify runs the same job silently and returns the same kind of report', async () => {
    const output = join(dir, 'library.raw');
    const report = await runSparsify(copyOptions(output), makeContext());
    expect(report).toMatchObject({ tool: 'sparsify', mode: 'copy', output: { path: output, format: 'raw' }, verify: { ok: true } });
    expect((await verifyImage(output, 'raw', image.manifestPath)).problems).toEqual([]);
    expect(await leftoversUnder(work)).toEqual([]);
  });
});
