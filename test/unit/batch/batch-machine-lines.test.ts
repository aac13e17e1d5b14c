import { describe, expect, it } from 'vitest';
import { BatchMachineLines } from '../../../src/batch/batch-machine-lines.js';
import type { DiskOutcome } from '../../../src/batch/batch-report.js';
import type { RunReport } from '../../../src/report/types.js';

const MiB = 1024 * 1024;
const inPlace = (before: number, after: number) => ({ mode: 'in-place', input: { path: '/x', format: 'raw', virtualSizeBytes: 1024 * MiB, allocatedBytes: before }, allocatedBytesAfter: after }) as unknown as RunReport;

function collect(): { lines: string[]; sink: { write(line: string): void } } {
  const lines: string[] = [];
  return { lines, sink: { write: (line) => lines.push(...line.split('\n').filter(Boolean)) } };
}

describe('batch --machine-readable lines', () => {
  it('the task list, each disk’s single-run lines under its number, its result, the batch’s state, its N/D progress and the total', () => {
    const { lines, sink } = collect();
    const disks: DiskOutcome[] = [
      { domain: 'web', target: 'vda', source: '/i/web.raw', status: 'done', resumed: true, report: inPlace(10 * MiB, 4 * MiB) },
      { source: '/i/a.raw', status: 'failed', error: 'placeholder' },
      { source: '/i/b.raw', status: 'failed', error: 'placeholder' },
    ];
    // Disk 1 done by an earlier run (weight 0); disks 2 and 3 run here, 300 and 100 host bytes.
    const m = new BatchMachineLines(sink, [0, 300, 100]);
    m.begin(disks, [true, false, false]);
    const ui = m.taskUi(1);
    ui.message!('Copy to output');
    ui.progress!({ doneBytes: 50, totalBytes: 100, atMs: 0 });
    ui.progress!({ doneBytes: 50, totalBytes: 100, atMs: 1 }); // same percentage: nothing new
    m.settled(1, { source: '/i/a.raw', status: 'done', report: inPlace(20 * MiB, 10 * MiB) }, { finished: 2, failed: 0, disks: 3, reclaimedBytes: 16 * MiB, etaSeconds: 4.4 });
    m.settled(2, { source: '/i/b.raw', status: 'failed', error: 'not a disk image' }, { finished: 3, failed: 1, disks: 3, reclaimedBytes: 16 * MiB, etaSeconds: 0 });
    m.message('b: FAILED: why');
    m.total({ disks: 3, done: 2, failed: 1, reclaimedBytes: 16 * MiB });
    expect(lines).toEqual([
      'sparsify-batch disks=3',
      'sparsify-disk 1 web/vda (/i/web.raw)',
      'sparsify-disk 2 /i/a.raw',
      'sparsify-disk 3 /i/b.raw',
      `sparsify-disk-done 1 reclaimed=${6 * MiB} resumed=1`,
      'sparsify-task 2 Copy to output',
      'sparsify-task 2 50/100',
      'sparsify-task 2 sparsify-progress done=50 total=100',
      '150/400',
      `sparsify-disk-done 2 reclaimed=${10 * MiB}`,
      '300/400',
      `sparsify-batch finished=2 disks=3 failed=0 reclaimed=${16 * MiB} eta=4`,
      'sparsify-disk-failed 3 not a disk image',
      '400/400',
      `sparsify-batch finished=3 disks=3 failed=1 reclaimed=${16 * MiB}`,
      'b: FAILED: why',
      `sparsify-batch-total disks=3 done=2 failed=1 reclaimed=${16 * MiB}`,
    ]);
  });

  it('no weight known (every disk settled before, or sizes unknown): no N/D line, results still given', () => {
    const { lines, sink } = collect();
    const m = new BatchMachineLines(sink, [0]);
    m.begin([{ source: '/i/a.raw', status: 'failed', error: 'changed since' }], [true]);
    expect(lines).toEqual(['sparsify-batch disks=1', 'sparsify-disk 1 /i/a.raw', 'sparsify-disk-failed 1 changed since']);
  });
});
