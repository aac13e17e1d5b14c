import type { RunContext } from '../context.js';
import { readZeroExtents } from '../disk/zero-map.js';
import { sliceReader, type BlockDevice, type BlockReader } from '../disk/types.js';
import { ExtentSet } from '../disk/extent-set.js';
import { diskFreeRanges, readVolumeFreeMap } from '../engines/map.js';
import { trimByMount } from '../engines/mount.js';
import { planVolumes, unmatchedNames, type PlanInput, type ProbedVolume, type VolumePlan } from '../engines/plan.js';
import { probeVolume } from '../fs/probe.js';
import { readLayout } from '../layout/read-layout.js';
import type { Layout } from '../layout/types.js';
import type { VolumeReport } from '../report/types.js';

/** Swap keeps its first page: the header with label, UUID and version (as virt-sparsify). */
export const SWAP_HEADER_BYTES = 4096;

/** The disk's layout and the plan for each of its volumes. */
export interface Examined {
  readonly layout: Layout;
  readonly plans: readonly VolumePlan[];
}

/**
 * Reads the partition table, probes every volume, reads the free map of each volume the map
 * engine knows (unless --engine mount or --no-zero), and plans what to do with each.
 */
export async function examineDisk(ctx: RunContext, device: BlockReader, input: PlanInput): Promise<Examined> {
  const layout = await readLayout(device);
  for (const note of layout.notes) ctx.log.warn(note);
  const wantMaps = input.engine !== 'mount' && !input.noZero;
  const probed: ProbedVolume[] = [];
  for (const volume of layout.volumes) {
    const fs = await probeVolume(sliceReader(device, volume.offsetBytes, volume.sizeBytes));
    const skipMap = !wantMaps || input.ignore.includes(volume.name) || input.zero.includes(volume.name);
    const freeMap = skipMap ? undefined : await readVolumeFreeMap(device, volume, fs);
    if (freeMap && !freeMap.trusted) ctx.log.debug(`${volume.name}: ${fs.type} map not trusted: ${freeMap.reason}`);
    probed.push({ volume, fs, ...(freeMap ? { freeMap } : {}) });
  }
  for (const name of unmatchedNames([...input.ignore, ...input.zero], layout.volumes)) {
    ctx.log.warn(`${name}: no such filesystem on this disk (volumes: ${layout.volumes.map((v) => v.name).join(', ')})`);
  }
  return { layout, plans: planVolumes(probed, input) };
}

/** What happened to one volume. */
export interface VolumeOutcome {
  readonly handled: string;
  readonly reason: string;
  /** Set when the zero sweep after the pass cannot see it (copy mode skips mapped free space). */
  readonly reclaimedBytes?: number;
}

/** Where the volume pass runs: the copy overlay, or the image itself. */
export interface PassTarget {
  readonly device: BlockDevice;
  /** The same disk as a file, for loop devices (mount engine); absent when not root. */
  readonly fuseFile?: string;
  readonly workDir: string;
  readonly inPlace: boolean;
}

/** Runs the plan for one volume on the target. */
export async function runVolumePlan(ctx: RunContext, plan: VolumePlan, target: PassTarget): Promise<VolumeOutcome> {
  const { volume } = plan;
  const kept = target.inPlace ? 'left alone' : 'copied as is';
  const keep = (reason: string, warning?: string): VolumeOutcome => {
    if (warning) ctx.log.warn(warning);
    return { handled: kept, reason };
  };
  switch (plan.action) {
    case 'keep':
      return keep(plan.reason, plan.warn ? `${volume.name}: ${plan.reason}: ${kept}` : undefined);
    case 'zero':
    case 'swap':
    case 'map':
      return makeZero(plan, target);
    case 'mount': {
      if (!target.fuseFile) return keep('the mount engine is not available here');
      const outcome = await trimByMount(ctx, {
        fuseFile: target.fuseFile,
        volume,
        fs: plan.fs,
        workDir: target.workDir,
        zeroFill: !target.inPlace,
      });
      if (outcome.status === 'trimmed') {
        const how = outcome.method === 'fstrim' ? 'trimmed' : 'zero-filled';
        return { handled: how, reason: outcome.note ? `${plan.reason}; ${outcome.note}` : plan.reason };
      }
      const why = outcome.status === 'no-trim' ? outcome.reason : `cannot be mounted (${outcome.reason})`;
      return keep(why, target.inPlace ? notTrimmedWarning(plan, why) : `${volume.name}: ${why}: ${kept}`);
    }
  }
}

/**
 * The byte ranges (disk offsets) a plan makes read as zero without a filesystem pass: a trusted
 * free map, a --zero volume whole, swap after its header. Empty for the other actions.
 */
export function zeroingRanges(plan: VolumePlan): ExtentSet {
  const { volume } = plan;
  switch (plan.action) {
    case 'map':
      return diskFreeRanges(volume, plan.freeMap!);
    case 'zero':
      return ExtentSet.of(volume.offsetBytes, volume.sizeBytes);
    case 'swap':
      return ExtentSet.of(volume.offsetBytes + SWAP_HEADER_BYTES, Math.max(0, volume.sizeBytes - SWAP_HEADER_BYTES));
    default:
      return ExtentSet.empty;
  }
}

const HANDLED: Record<'map' | 'zero' | 'swap', [copy: string, inPlace: string]> = {
  map: ['free blocks skipped', 'free blocks discarded'],
  zero: ['zeroed', 'zeroed'],
  swap: ['swap cleared', 'swap cleared'],
};

/**
 * In copy mode the ranges join the copier's skip set: nothing is written now, and they are
 * never read. In place they are discarded with write-zeroes that may punch holes, so they read
 * back as zero whatever the format.
 */
async function makeZero(plan: VolumePlan, target: PassTarget): Promise<VolumeOutcome> {
  const zeros = await readZeroExtents(target.device, plan.volume.offsetBytes, plan.volume.sizeBytes);
  const todo = zeroingRanges(plan).subtract(zeros);
  if (target.inPlace) for (const r of todo.ranges) await target.device.writeZeroes(r.start, r.end - r.start, true);
  const handled = HANDLED[plan.action as 'map' | 'zero' | 'swap'][target.inPlace ? 1 : 0];
  return { handled, reason: plan.reason, reclaimedBytes: todo.totalBytes };
}

/** virt-sparsify's in-place warning, with the reason added. */
function notTrimmedWarning(plan: VolumePlan, why: string): string {
  const name = plan.volume.name;
  return (
    `fstrim operation is not supported on ${name} (${plan.fs.type}: ${why}).  ` +
    `Suppress this warning using '--ignore ${name}', or use copying mode instead.`
  );
}

/** Bytes of each volume that read as zero, from block status alone. */
export async function zeroBytesPerVolume(device: BlockDevice, plans: readonly VolumePlan[]): Promise<number[]> {
  const out: number[] = [];
  for (const { volume } of plans) {
    out.push((await readZeroExtents(device, volume.offsetBytes, volume.sizeBytes)).totalBytes);
  }
  return out;
}

/** Builds the report rows from plans, outcomes and the zero counts before and after. */
export function volumeReports(
  plans: readonly VolumePlan[],
  outcomes: readonly VolumeOutcome[],
  zeroBefore: readonly number[],
  zeroAfter: readonly number[],
): VolumeReport[] {
  return plans.map((p, i) => ({
    name: p.volume.name,
    type: p.fs.type,
    ...(p.fs.detail ? { detail: p.fs.detail } : {}),
    offsetBytes: p.volume.offsetBytes,
    sizeBytes: p.volume.sizeBytes,
    action: p.action,
    handled: outcomes[i]?.handled ?? 'not reached',
    reason: outcomes[i]?.reason ?? p.reason,
    reclaimedBytes: outcomes[i]?.reclaimedBytes ?? Math.max(0, (zeroAfter[i] ?? 0) - (zeroBefore[i] ?? 0)),
  }));
}
