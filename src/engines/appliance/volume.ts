/**
 * One volume inside the appliance, as virt-sparsify does it and a little more: mount read-write
 * (the appliance's kernel replays a journal that needs it, into the overlay in copy mode),
 * leave a read-only mount alone (a read-only device or LV), fstrim, and where fstrim is refused
 * fill the free space with zeros (copy mode only: in place, zeros in a partly used qcow2
 * cluster would allocate it). btrfs is mounted at its top-level subvolume and trimmed once per
 * filesystem: fstrim frees only space no subvolume or snapshot uses, so read-only snapshots
 * stay exactly as they were. Whatever happens, everything is unmounted and synced after.
 */
import type { RunContext } from '../../context.js';
import type { VolumePlan } from '../../plan/types.js';
import type { EngineSteps, VolumeOutcome } from '../engine.js';
import { keptVolume } from '../kept.js';
import { ApplianceCommandError, type Appliance } from './guestfish.js';

/** What the session keeps across volumes. */
export interface VolumeWork {
  readonly inPlace: boolean;
  readonly steps: EngineSteps;
  /** btrfs UUID → the volume through which that filesystem was trimmed. */
  readonly trimmedBtrfs: Map<string, string>;
}

/** statvfs f_flag: ST_RDONLY (Linux, glibc). */
const ST_RDONLY = 1;

/** Mounts, trims (or zero-fills) and unmounts one volume; a volume that cannot be is kept, with the reason. */
export async function handleVolume(ctx: RunContext, g: Appliance, plan: VolumePlan, work: VolumeWork): Promise<VolumeOutcome> {
  const { fs } = plan;
  const sameFs = fs.type === 'btrfs' && fs.uuid !== undefined ? work.trimmedBtrfs.get(fs.uuid) : undefined;
  if (sameFs) return { handled: 'trimmed', reason: `${plan.reason}; the filesystem was trimmed through ${sameFs}` };
  return withMountsReleased(g, () => mountAndTrim(ctx, g, plan, work));
}

/** Runs `body`, then unmounts everything and syncs, whether it succeeded or not. */
export async function withMountsReleased<T>(g: Appliance, body: () => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await body();
  } catch (err) {
    // The first error is the one to report; the appliance may be gone by now.
    await releaseMounts(g).catch(() => undefined);
    throw err;
  }
  await releaseMounts(g);
  return result;
}

async function mountAndTrim(ctx: RunContext, g: Appliance, plan: VolumePlan, work: VolumeWork): Promise<VolumeOutcome> {
  const { volume, fs } = plan;
  const mountError = await work.steps.step(`Mount ${volume.name} in the appliance`, () => mount(g, plan));
  if (mountError !== undefined) return keptVolume(ctx, plan, work.inPlace, `cannot be mounted (${mountError})`);
  if (await readOnly(g)) return keptVolume(ctx, plan, work.inPlace, 'mounted read-only (a read-only device)');
  const trimError = await work.steps.step(`Run fstrim on ${volume.name}`, () => failureOf(g.run('fstrim', '/')));
  if (trimError === undefined) {
    if (fs.type === 'btrfs' && fs.uuid !== undefined) work.trimmedBtrfs.set(fs.uuid, volume.name);
    return { handled: 'trimmed', reason: plan.reason };
  }
  if (work.inPlace) return keptVolume(ctx, plan, work.inPlace, `fstrim failed (${trimError})`);
  const zeroError = await work.steps.step(`Fill free space in ${volume.name} with zero`, () => failureOf(g.run('zero-free-space', '/')));
  if (zeroError !== undefined) return keptVolume(ctx, plan, work.inPlace, `fstrim failed (${trimError}), and so did zero-filling (${zeroError})`);
  return { handled: 'zero-filled', reason: `${plan.reason}; fstrim failed (${trimError}): free space zero-filled` };
}

/** Unmounts everything and syncs, so that every write and discard has reached the disk's export. */
export async function releaseMounts(g: Appliance): Promise<void> {
  await g.run('umount-all');
  await g.run('sync');
}

/** btrfs at its top-level subvolume (one fstrim covers the filesystem); anything else as it is. */
function mount(g: Appliance, plan: VolumePlan): Promise<string | undefined> {
  const device = plan.volume.name;
  return failureOf(plan.fs.type === 'btrfs' ? g.run('mount-options', 'subvolid=5', device, '/') : g.run('mount', device, '/'));
}

async function readOnly(g: Appliance): Promise<boolean> {
  const flag = /^flag: (-?\d+)$/m.exec(await g.run('statvfs', '/'))?.[1];
  return flag !== undefined && Number(flag) !== -1 && (Number(flag) & ST_RDONLY) !== 0;
}

/**
 * libguestfs' error line when the command failed, undefined when it worked. Cancellation and a
 * dead appliance are not a volume's failure: they end the run.
 */
async function failureOf(command: Promise<string>): Promise<string | undefined> {
  try {
    await command;
    return undefined;
  } catch (err) {
    if (err instanceof ApplianceCommandError) return err.message;
    throw err;
  }
}
