import type { VolumeOutcome } from '../engines/engine.js';
import type { VolumePlan } from '../plan/types.js';
import type { VolumeReport } from './types.js';

/** One volume of a finished run: what was planned, what happened, and what reads as zero before and after. */
export interface VolumeResult {
  readonly plan: VolumePlan;
  readonly outcome: VolumeOutcome;
  /** Bytes of the volume that read as zero before the pass (block status alone). */
  readonly zeroBytesBefore: number;
  /** The same, after the pass (in copy mode: before the copy). */
  readonly zeroBytesAfter: number;
}

/**
 * Bytes the run made read as zero: what the engine counted when the zero sweep cannot see it
 * (copy mode skips mapped free space without writing it), else what newly reads as zero.
 */
export function reclaimedBytes(result: VolumeResult): number {
  return result.outcome.reclaimedBytes ?? Math.max(0, result.zeroBytesAfter - result.zeroBytesBefore);
}

/** The report rows, one per volume, in the order of the results. */
export function volumeReports(results: readonly VolumeResult[]): VolumeReport[] {
  return results.map((r) => {
    const { volume, fs, action, engine } = r.plan;
    return {
      name: volume.name,
      type: fs.type,
      ...(fs.detail ? { detail: fs.detail } : {}),
      offsetBytes: volume.offsetBytes,
      sizeBytes: volume.sizeBytes,
      action,
      ...(engine ? { engine } : {}),
      handled: r.outcome.handled,
      reason: r.outcome.reason,
      reclaimedBytes: reclaimedBytes(r),
    };
  });
}
