import { describe, expect, it } from 'vitest';
import { formatJsonReport } from '../../../src/report/json.js';
import { CAPABILITIES, capabilityLines, machineReadableUi } from '../../../src/report/machine-readable.js';
import { closingText, formatSummary, formatVerify } from '../../../src/report/summary.js';
import type { RunReport, VerifyReport } from '../../../src/report/types.js';
import { copyReport } from './report-fixtures.js';

const MiB = 1024 * 1024;

describe('formatSummary: the terminal summary', () => {
  it('lines the volumes up under their header, then the sizes and the time', () => {
    expect(formatSummary(copyReport()).split('\n')).toEqual([
      'Volume     Type  Engine  Handled              Reclaimed  Why',
      '/dev/sda1  ext4  map     free blocks skipped  512 MiB    ext4: trusted free map',
      '/dev/sda2  vfat  -       copied as is         0 B        --ignore',
      '',
      'Input:  900 MiB allocated (raw, 2.0 GiB virtual) /in/disk.raw',
      'Output: 300 MiB allocated (qcow2, compressed) /out/disk.qcow2',
      'Time:   2.3 s',
    ]);
  });

  it('in place: the size after, the notes and --verify', () => {
    const verify: VerifyReport = { checkedBytes: 10 * MiB, identicalBytes: 6 * MiB, zeroBytes: 4 * MiB, ms: 1500, ok: true, notVerified: [{ name: '/dev/sda1', reason: 'mounted' }] };
    const { output: _, copy: __, ...rest } = copyReport();
    const report: RunReport = { ...rest, mode: 'in-place', allocatedBytesAfter: 100 * MiB, notes: ['qcow2: nothing to punch'], verify };
    const lines = formatSummary(report).split('\n');
    expect(lines.slice(4)).toEqual([
      'Input:  900 MiB allocated (raw, 2.0 GiB virtual) /in/disk.raw',
      'After:  100 MiB allocated',
      'Note:   qcow2: nothing to punch',
      'Verify: ok: 10 MiB checked, 6.0 MiB unchanged, 4.0 MiB made zero and reading as zero in 1.5 s; not verified: /dev/sda1 (mounted)',
      'Time:   2.3 s',
    ]);
  });

  it('formatVerify says "identical to the source" in copy mode', () => {
    const v: VerifyReport = { checkedBytes: MiB, identicalBytes: MiB, zeroBytes: 0, ms: 100, ok: true, notVerified: [] };
    expect(formatVerify(v, 'copy')).toBe('ok: 1.0 MiB checked, 1.0 MiB identical to the source, 0 B made zero and reading as zero in 0.1 s');
  });

  it("closingText adds virt-sparsify's advice after a copy, not after a run in place", () => {
    const copy = copyReport();
    expect(closingText(copy)).toBe(`\n${formatSummary(copy)}\n\nBefore deleting the old disk, carefully check that the target disk boots and works correctly.\n`);
    const inPlace: RunReport = { ...copy, mode: 'in-place' };
    expect(closingText(inPlace)).toBe(`\n${formatSummary(inPlace)}\n`);
  });
});

describe('formatJsonReport: what --json writes', () => {
  it('is the RunReport itself, indented by two, newline-terminated, and parses back to it', () => {
    const report = copyReport();
    const text = formatJsonReport(report);
    expect(text.endsWith('}\n')).toBe(true);
    expect(text.split('\n')[1]).toBe('  "tool": "sparsify",');
    expect(JSON.parse(text) as RunReport).toEqual(report);
  });
});

describe('machine-readable lines', () => {
  it("the capability lines are virt-sparsify's, one a line", () => {
    expect(capabilityLines()).toBe(`${CAPABILITIES.join('\n')}\n`);
    expect(CAPABILITIES).toContain('in-place');
  });

  it('one line per message, and a DONE/TOTAL line only when the whole percentage changes', () => {
    const lines: string[] = [];
    const ui = machineReadableUi({ write: (line) => lines.push(line) });
    ui.message!('Copy to destination and make sparse');
    for (const done of [0, 10, 999, 1000, 1005, 1010, 5000, 10_000]) ui.progress!({ doneBytes: done, totalBytes: 10_000, atMs: 0 });
    const progress = lines.filter((l) => /^\d+\/\d+\n$/.test(l));
    expect(progress).toEqual(['0/10000\n', '999/10000\n', '1000/10000\n', '5000/10000\n', '10000/10000\n']);
    expect(lines[0]).toBe('Copy to destination and make sparse\n');
  });

  it('the rate and time left on a line of their own after each DONE/TOTAL line, once known', () => {
    const lines: string[] = [];
    const ui = machineReadableUi({ write: (line) => lines.push(line) });
    ui.progress!({ doneBytes: 0, totalBytes: 4000, atMs: 0 });
    ui.progress!({ doneBytes: 1000, totalBytes: 4000, bytesPerSecond: 500.4, etaSeconds: 6, atMs: 2000 });
    expect(lines).toEqual([
      '0/4000\n',
      'sparsify-progress done=0 total=4000\n',
      '1000/4000\n',
      'sparsify-progress done=1000 total=4000 rate=500 eta=6\n',
    ]);
  });

  it('an empty disk is 100% at once', () => {
    const lines: string[] = [];
    machineReadableUi({ write: (line) => lines.push(line) }).progress!({ doneBytes: 0, totalBytes: 0, atMs: 0 });
    expect(lines).toEqual(['0/0\n', 'sparsify-progress done=0 total=0\n']);
  });
});
