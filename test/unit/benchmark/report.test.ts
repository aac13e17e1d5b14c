import { describe, expect, it } from 'vitest';
import type { RowResult, RunRecord } from '../../../scripts/benchmark/cell.js';
import { summarize } from '../../../scripts/benchmark/report.js';

function run(wallSeconds: number, extra: Partial<RunRecord> = {}): RunRecord {
  return { exitCode: 0, wallSeconds, cpuSeconds: wallSeconds / 2, maxRssBytes: 10, treeRssBytes: 20, tmpPeakBytes: 0, round: 0, position: 0, outputBytes: 1000, ...extra };
}

describe('bench summaries', () => {
  it('takes medians per row and ratios against the sparsify row of the cell', () => {
    const rows: RowResult[] = [
      { peer: 'qemu-img', argv: [], runs: [run(9, { outputBytes: 4000 }), run(30, { outputBytes: 4000 }), run(12, { outputBytes: 4000 })], status: 'ok' },
      { peer: 'sparsify', argv: [], runs: [run(2), run(4, { treeRssBytes: 99 }), run(3)], status: 'ok' },
    ];
    const [qemu, sparsify] = summarize(rows);
    expect(sparsify).toMatchObject({ wallSeconds: 3, cpuSeconds: 1.5, peakRssBytes: 99, timeVsSparsify: 1, runsOk: 3 });
    expect(qemu).toMatchObject({ wallSeconds: 12, timeVsSparsify: 4, sizeVsSparsify: 4 });
  });

  it('adds the sync after each run to its wall time as the durable time, with its own ratio', () => {
    const rows: RowResult[] = [
      { peer: 'sparsify', argv: [], runs: [run(6, { syncSeconds: 0.5 }), run(5, { syncSeconds: 0.25 }), run(7, { syncSeconds: 1 })], status: 'ok' },
      { peer: 'qemu-img', argv: [], runs: [run(1.5, { syncSeconds: 3 }), run(1, { syncSeconds: 4.5 }), run(2, { syncSeconds: 2 })], status: 'ok' },
      { peer: 'floor', argv: [], runs: [run(1)], status: 'ok' },
    ];
    const [sparsify, qemu, floor] = summarize(rows);
    // Per run wall + sync (6.5, 5.25, 8), then the median; not the sum of the two medians.
    expect(sparsify).toMatchObject({ wallSeconds: 6, durableSeconds: 6.5, durableVsSparsify: 1 });
    expect(qemu).toMatchObject({ wallSeconds: 1.5, durableSeconds: 4.5, timeVsSparsify: 0.25 });
    expect(qemu!.durableVsSparsify).toBeCloseTo(4.5 / 6.5);
    // A run recorded without its sync (an older JSON) has no durable time.
    expect(floor).toMatchObject({ wallSeconds: 1, durableSeconds: undefined, durableVsSparsify: undefined });
  });

  it('counts no time from a failed run or a wrong output', () => {
    const rows: RowResult[] = [
      { peer: 'sparsify', argv: [], runs: [run(2), run(50, { exitCode: 1 })], status: 'failed' },
      { peer: 'nbdcopy', argv: [], runs: [run(1), run(1), run(1)], status: 'mismatch' },
    ];
    const [sparsify, nbdcopy] = summarize(rows);
    expect(sparsify).toMatchObject({ wallSeconds: 2, runsOk: 1 });
    expect(nbdcopy).toMatchObject({ runsOk: 0, wallSeconds: undefined, timeVsSparsify: undefined });
  });

  it("shows sparsify's filesystem pass and the appliance's launch from its report's phases", () => {
    const phases = (launch: number) => ({ examine: 0.5, 'volume /dev/sda1': 20, 'volume /dev/sda2': 3, 'appliance launch': launch, copy: 4 });
    const rows: RowResult[] = [
      { peer: 'sparsify', argv: [], runs: [run(30, { phases: phases(16) }), run(40, { phases: phases(18) }), run(35, { phases: phases(30) })], status: 'ok' },
      { peer: 'sparsify-mount', argv: [], runs: [run(9, { phases: { 'volume /dev/sda1': 2 } })], status: 'ok' },
      { peer: 'virt-sparsify', argv: [], runs: [run(90)], status: 'ok' },
    ];
    const [appliance, mount, virt] = summarize(rows);
    expect(appliance).toMatchObject({ volumePassSeconds: 23, launchSeconds: 18 });
    expect(mount).toMatchObject({ volumePassSeconds: 2, launchSeconds: undefined });
    expect(virt).toMatchObject({ volumePassSeconds: undefined, launchSeconds: undefined });
  });
});
