import { ExtentSet } from '../../../src/disk/extent-set.js';
import type { VolumeOutcome } from '../../../src/engines/engine.js';
import type { FsType } from '../../../src/fs/types.js';
import type { Action, VolumePlan } from '../../../src/plan/types.js';
import type { RunReport } from '../../../src/report/types.js';
import type { VolumeResult } from '../../../src/report/volumes.js';

const MiB = 1024 * 1024;

/** A plan for partition `n` of a disk: 100 MiB at `n` MiB; its engine as the planner gives it (--zero and swap: the map engine's). */
export function plan(n: number, type: FsType, action: Action, reason: string, detail?: string): VolumePlan {
  return {
    volume: { name: `/dev/sda${n}`, offsetBytes: n * MiB, sizeBytes: 100 * MiB, kind: 'partition', partitionNumber: n },
    fs: { type, ...(detail ? { detail } : {}) },
    action,
    ...(action === 'keep' ? {} : { engine: action === 'zero' || action === 'swap' ? 'map' : action }),
    reason,
    warn: false,
    protectedRanges: ExtentSet.empty,
  };
}

export function result(p: VolumePlan, outcome: VolumeOutcome, zeroBytesBefore: number, zeroBytesAfter: number): VolumeResult {
  return { plan: p, outcome, zeroBytesBefore, zeroBytesAfter };
}

/** A copy-mode report of two volumes. */
export function copyReport(): RunReport {
  return {
    tool: 'sparsify',
    version: '0.1.0',
    mode: 'copy',
    input: { path: '/in/disk.raw', format: 'raw', virtualSizeBytes: 2048 * MiB, allocatedBytes: 900 * MiB },
    output: { path: '/out/disk.qcow2', format: 'qcow2', compressed: true, allocatedBytes: 300 * MiB },
    partitionTable: 'gpt',
    volumes: [
      { name: '/dev/sda1', type: 'ext4', offsetBytes: MiB, sizeBytes: 1024 * MiB, action: 'map', engine: 'map', handled: 'free blocks skipped', reason: 'ext4: trusted free map', reclaimedBytes: 512 * MiB },
      { name: '/dev/sda2', type: 'vfat', detail: 'FAT32', offsetBytes: 1025 * MiB, sizeBytes: 64 * MiB, action: 'keep', handled: 'copied as is', reason: '--ignore', reclaimedBytes: 0 },
    ],
    warnings: ['/dev/sda2: --ignore'],
    copy: { totalBytes: 2048 * MiB, dataBytesWritten: 300 * MiB, zeroExtentBytes: 1000 * MiB, zeroScannedBytes: 0, skippedFreeBytes: 512 * MiB, readBytes: 400 * MiB, elapsedMs: 1234 },
    phases: [{ name: 'copy', ms: 1234 }],
    totalMs: 2345,
  };
}
