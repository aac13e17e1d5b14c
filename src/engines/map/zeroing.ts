import { ExtentSet } from '../../disk/extent-set.js';
import { readZeroExtents } from '../../disk/zero-map.js';
import { swapHeaderBytes } from '../../fs/swap/free-map.js';
import type { VolumePlan } from '../../plan/types.js';
import { humanBytes } from '../../util/size.js';
import type { EngineTarget, VolumeOutcome } from '../engine.js';
import { diskFreeRanges } from './free-map.js';

/**
 * The byte ranges (disk offsets) a plan makes read as zero without a filesystem pass: a trusted
 * free map, a --zero volume whole, swap after its header; never a protected byte. Empty for the
 * other actions.
 */
export function zeroingRanges(plan: VolumePlan): ExtentSet {
  return wholeZeroingRanges(plan).subtract(plan.protectedRanges);
}

function wholeZeroingRanges(plan: VolumePlan): ExtentSet {
  const { volume } = plan;
  switch (plan.action) {
    case 'map':
      return diskFreeRanges(volume, plan.freeMap!);
    case 'zero':
      return ExtentSet.of(volume.offsetBytes, volume.sizeBytes);
    case 'swap': {
      // Swap keeps its first page (label, UUID, version, signature), as virt-sparsify does.
      const headerBytes = Math.min(swapHeaderBytes(plan.fs), volume.sizeBytes);
      return ExtentSet.of(volume.offsetBytes + headerBytes, volume.sizeBytes - headerBytes);
    }
    default:
      return ExtentSet.empty;
  }
}

const HANDLED: Record<string, [copy: string, inPlace: string]> = {
  map: ['free blocks skipped', 'free blocks discarded'],
  zero: ['zeroed', 'zeroed'],
  swap: ['swap cleared', 'swap cleared'],
};

/**
 * In copy mode the ranges join the copier's skip set: nothing is written now, and they are
 * never read. In place they are discarded with write-zeroes that may punch holes, so they read
 * back as zero whatever the format.
 */
export async function makeZero(plan: VolumePlan, target: EngineTarget): Promise<VolumeOutcome> {
  const zeros = await readZeroExtents(target.device, plan.volume.offsetBytes, plan.volume.sizeBytes);
  const todo = zeroingRanges(plan).subtract(zeros);
  if (target.inPlace) for (const r of todo.ranges) await target.device.writeZeroes(r.start, r.end - r.start, true);
  const handled = plan.fs.type === 'luks' ? luksHandled(todo.totalBytes, target.inPlace) : HANDLED[plan.action]?.[target.inPlace ? 1 : 0] ?? 'zeroed';
  return { handled, reason: plan.reason, reclaimedBytes: todo.totalBytes };
}

/**
 * A LUKS volume's "Handled": how much ciphertext was dropped, and what the guest sees there now:
 * noise (the zeros decrypt to random bytes), which no filesystem reads in its free blocks.
 */
export function luksHandled(droppedBytes: number, inPlace: boolean): string {
  return `${humanBytes(droppedBytes)} ciphertext ${inPlace ? 'discarded' : 'skipped'}; free blocks read as noise`;
}
