/** The tests' report reader accepts a RunReport and fails loudly on anything else. */
import { describe, expect, it } from 'vitest';
import type { RunReport, VolumeReport } from '../../../src/index.js';
import { parseReport } from '../../helpers/report.js';

const volume: VolumeReport = {
  name: '/dev/sda1',
  type: 'ext4',
  offsetBytes: 1_048_576,
  sizeBytes: 8_388_608,
  action: 'map',
  handled: 'free blocks skipped',
  reason: 'ext4: free blocks from its own allocation map',
  reclaimedBytes: 4096,
};

const report: RunReport = {
  tool: 'sparsify',
  version: '0.1.0',
  mode: 'copy',
  input: { path: '/in.raw', format: 'raw', virtualSizeBytes: 16_777_216, allocatedBytes: 8192 },
  partitionTable: 'gpt',
  volumes: [volume],
  warnings: [],
  phases: [{ name: 'copy', ms: 3 }],
  totalMs: 5,
};

const text = (value: unknown) => JSON.stringify(value);

describe('parseReport', () => {
  it('returns a well-formed report as it is', () => {
    expect(parseReport(text(report))).toEqual(report);
    expect(parseReport(text({ ...report, mode: 'in-place', volumes: [] })).volumes).toEqual([]);
  });

  it('names what is wrong with a malformed report', () => {
    expect(() => parseReport('{"tool":', 'r.json')).toThrow(/^r\.json: not JSON/);
    expect(() => parseReport('[]')).toThrow(/not an object/);
    expect(() => parseReport(text({ ...report, tool: 'virt-sparsify' }))).toThrow(/tool is "virt-sparsify"/);
    expect(() => parseReport(text({ ...report, mode: 'batch' }))).toThrow(/mode is "batch"/);
    expect(() => parseReport(text({ ...report, volumes: undefined }))).toThrow(/no volumes array/);
    expect(() => parseReport(text({ ...report, warnings: 'none' }))).toThrow(/no warnings array/);
    expect(() => parseReport(text({ ...report, volumes: [{ ...volume, reason: 3 }] }))).toThrow(/volumes\[0\]\.reason is not a string/);
    expect(() => parseReport(text({ ...report, volumes: [{ ...volume, reclaimedBytes: '4096' }] }))).toThrow(/volumes\[0\]\.reclaimedBytes is not a number/);
    expect(() => parseReport(text({ ...report, volumes: [null] }))).toThrow(/volumes\[0\] is not an object/);
  });
});
