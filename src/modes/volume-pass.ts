import type { RunContext } from '../context.js';
import { fullDirError } from '../host/free-space.js';
import { isSparsifyError } from '../errors.js';
import { readZeroExtents } from '../disk/zero-map.js';
import { sliceReader, type BlockDevice, type BlockReader } from '../disk/types.js';
import { ExtentSet } from '../disk/extent-set.js';
import { restoreChangedBytes, saveBytes } from '../disk/saved-bytes.js';
import { diskFreeRanges, readVolumeFreeMap } from '../engines/map.js';
import { trimByMount } from '../engines/mount.js';
import { planVolumes, unmatchedNames, type PlanInput, type ProbedVolume, type VolumePlan } from '../engines/plan.js';
import { probeVolume } from '../fs/probe.js';
import { swapHeaderBytes } from '../fs/swap.js';
import { readLayout } from '../layout/read-layout.js';
import { readLvm } from '../layout/lvm.js';
import { lvmStructureRanges, probeLvmPv } from '../layout/lvm-pv.js';
import type { Layout, Volume } from '../layout/types.js';
import type { FreeMap } from '../fs/types.js';
import type { VolumeReport } from '../report/types.js';

/** The disk's layout and the plan for each of its volumes. */
export interface Examined {
  readonly layout: Layout;
  readonly plans: readonly VolumePlan[];
  /**
   * Every partition-table and LVM structure found (disk offsets): the layout's, and each PV's
   * label and metadata areas. Subtracted from whatever a plan zeroes, trims or discards.
   */
  readonly protectedRanges: ExtentSet;
}

/**
 * Reads the partition table, probes every volume, reads the free map of each volume the map
 * engine knows (unless --engine mount or --no-zero), and plans what to do with each.
 */
export async function examineDisk(ctx: RunContext, device: BlockReader, input: PlanInput): Promise<Examined> {
  const layout = await readLayoutOrNothing(ctx, device, input.noZero);
  for (const note of layout.notes) ctx.log.warn(note);
  const ignore = [...input.ignore];
  const probed: ProbedVolume[] = [];
  const probe = async (volume: Volume) => {
    const fs = await probeVolume(sliceReader(device, volume.offsetBytes, volume.sizeBytes));
    probed.push({ volume, fs });
    return fs;
  };
  const vgNames: string[] = [];
  let protectedRanges = layout.protectedRanges;
  for (const volume of layout.volumes) {
    if ((await probe(volume)).type !== 'lvm-pv') continue;
    const lvm = await readPhysicalVolume(ctx, device, volume);
    protectedRanges = protectedRanges.union(lvm.structures);
    probed[probed.length - 1] = { ...probed[probed.length - 1]!, freeMap: lvm.pvFreeMap };
    vgNames.push(lvm.vgName);
    // --ignore VG leaves the whole group alone: its logical volumes and its free extents.
    if (input.ignore.includes(lvm.vgName)) ignore.push(volume.name, ...lvm.volumes.map((v) => v.name));
    for (const lv of lvm.volumes) await probe(lv);
  }
  const wantMaps = input.engine !== 'mount' && !input.noZero;
  for (const [i, p] of probed.entries()) {
    const skipMap = !wantMaps || p.freeMap || ignore.includes(p.volume.name) || input.zero.includes(p.volume.name);
    const freeMap = skipMap ? p.freeMap : await readVolumeFreeMap(device, p.volume, p.fs);
    if (freeMap && !freeMap.trusted) ctx.log.debug(`${p.volume.name}: ${p.fs.type} map not trusted: ${freeMap.reason}`);
    probed[i] = { ...p, ...(freeMap ? { freeMap } : {}) };
  }
  const names = probed.map((p) => p.volume.name);
  for (const name of unmatchedNames([...input.ignore, ...input.zero], probed.map((p) => p.volume)).filter((n) => !vgNames.includes(n))) {
    ctx.log.warn(`${name}: no such filesystem or volume group on this disk (volumes: ${names.join(', ')})`);
  }
  return { layout, plans: planVolumes(probed, { ...input, ignore }, protectedRanges), protectedRanges };
}

/**
 * The partition table; with --no-zero a table that cannot be read is no error (nothing is
 * done per volume anyway): the disk is copied as it is, with a warning.
 */
async function readLayoutOrNothing(ctx: RunContext, device: BlockReader, noZero: boolean): Promise<Layout> {
  try {
    return await readLayout(device);
  } catch (err) {
    if (!noZero || !isSparsifyError(err, 'BAD_LAYOUT')) throw err;
    ctx.log.warn(`${err.message}: the disk is copied as it is (--no-zero)`);
    const nothing = { volumes: [], notes: [], protectedRanges: ExtentSet.empty };
    return { table: 'none', diskSizeBytes: device.sizeBytes, sectorSizeBytes: 512, ...nothing };
  }
}

/** What one PV holds: its VG, its logical volumes and LVM's own structures (disk offsets). */
interface PhysicalVolume {
  readonly vgName: string;
  readonly volumes: Volume[];
  readonly pvFreeMap: FreeMap;
  readonly structures: ExtentSet;
}

/** A PV's logical volumes (disk offsets) and its VG's free extents on it as a trusted free map. */
async function readPhysicalVolume(ctx: RunContext, device: BlockReader, pv: Volume): Promise<PhysicalVolume> {
  const pvReader = sliceReader(device, pv.offsetBytes, pv.sizeBytes);
  let lvm;
  try {
    lvm = await readLvm(pvReader, pv.name);
  } catch (err) {
    if (!isSparsifyError(err, 'BAD_LAYOUT')) throw err;
    // Damaged LVM metadata: nothing on this PV is touched, its label and areas not even by --zero.
    const label = await probeLvmPv(pvReader);
    const structures = label ? lvmStructureRanges(label, pv.sizeBytes).shift(pv.offsetBytes) : ExtentSet.empty;
    return { vgName: '', volumes: [], pvFreeMap: { trusted: false, reason: err.message }, structures };
  }
  for (const note of lvm.notes) ctx.log.warn(note);
  for (const lv of lvm.unhandled) ctx.log.warn(`/dev/${lvm.vgName}/${lv.name}: ${lv.reason}: left as it is`);
  const volumes: Volume[] = lvm.volumes.map((lv) => ({ ...lv, offsetBytes: pv.offsetBytes + lv.offsetBytes }));
  const pvFreeMap: FreeMap = {
    trusted: true,
    free: lvm.freeOnPv,
    unitBytes: lvm.extentSizeBytes || 512,
    counterFreeBytes: lvm.freeOnPv.totalBytes,
    detail: lvm.vgName ? `VG ${lvm.vgName}: free extents` : 'no volume group metadata',
  };
  return { vgName: lvm.vgName, volumes, pvFreeMap, structures: lvm.structures.shift(pv.offsetBytes) };
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
  /** Where the copy's overlay grows (absent in place): a mount that fails there may mean it is full. */
  readonly overlayDir?: string;
}

/** The belt holds at most this many protected bytes of one volume in memory. */
const MAX_SAVED_BYTES = 64 * 1024 * 1024;

/**
 * Runs the plan for one volume on the target. The protected bytes inside the volume are left
 * out of every range an action zeroes or trims; as a belt for any engine (zero-fill cannot be
 * told which blocks to spare), they are also read before the action and written back after it
 * wherever they changed, with a warning. Per volume, because an engine only reaches its own volume.
 */
export async function runVolumePlan(ctx: RunContext, plan: VolumePlan, target: PassTarget): Promise<VolumeOutcome> {
  const guarded = plan.action !== 'keep' ? plan.protectedRanges : ExtentSet.empty;
  if (guarded.totalBytes > MAX_SAVED_BYTES) {
    ctx.log.debug(`${plan.volume.name}: ${guarded.totalBytes} protected bytes: too many to hold for the belt`);
    return runAction(ctx, plan, target);
  }
  const saved = await saveBytes(target.device, guarded);
  const outcome = await runAction(ctx, plan, target);
  const restored = await restoreChangedBytes(target.device, saved);
  if (!restored.isEmpty) {
    const where = restored.ranges.map((r) => `${r.start}–${r.end - 1}`).join(', ');
    ctx.log.warn(
      `${plan.volume.name}: the ${plan.action} pass changed partition-table or LVM structures inside the volume ` +
        `(bytes ${where}); they were written back`,
    );
  }
  return outcome;
}

async function runAction(ctx: RunContext, plan: VolumePlan, target: PassTarget): Promise<VolumeOutcome> {
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
        keep: plan.protectedRanges.shift(-volume.offsetBytes),
      }).catch(async (err: unknown) => {
        throw (await overlayFull(target, err)) ?? err;
      });
      if (outcome.status !== 'trimmed') {
        // The overlay under the loop device could not grow: a full temp dir, not a broken filesystem.
        const full = await overlayFull(target, new Error(outcome.reason));
        if (full) throw full;
      }
      if (outcome.status === 'trimmed') {
        const how = outcome.method === 'fstrim' ? 'trimmed' : 'zero-filled';
        return { handled: how, reason: outcome.note ? `${plan.reason}; ${outcome.note}` : plan.reason };
      }
      const why = outcome.status === 'no-trim' ? outcome.reason : `cannot be mounted (${outcome.reason})`;
      return keep(why, target.inPlace ? notTrimmedWarning(plan, why) : `${volume.name}: ${why}: ${kept}`);
    }
  }
}

async function overlayFull(target: PassTarget, cause: unknown): Promise<Error | undefined> {
  return target.overlayDir === undefined ? undefined : fullDirError(target.overlayDir, cause);
}

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
