/**
 * Shrinking one disk inside a launched libguestfs appliance whose only drive is the run's
 * writable overlay (the input is its backing file and is never written). Steps, each named in
 * its error: check each ext filesystem (e2fsck -f), resize it to its minimum (resize2fs -M, the
 * size resize2fs -P estimates) and grow it back by the margin (src/shrink/ext.ts; ntfs: ntfs.ts;
 * btrfs: btrfs.ts; an LVM PV: its last LV, then the PV, lvm.ts); deactivate the volume groups, whose device-mapper
 * tables would keep the partitions busy; move the partitions after it down (copy-device-to-device,
 * forward, to lower offsets: safe, see plan.ts); rewrite the partition table (src/layout/rewrite/)
 * through the appliance, so its kernel sees every write in order; make each swap area again at
 * its new place with its UUID and label; activate the volume groups again where they now lie and
 * fit each shrunk PV to its partition (pvresize); then check: e2fsck -f -p on every resized
 * filesystem (an LV's too), btrfs check on a btrfs; each resized filesystem's files listed again
 * where it now lies and compared with their listing before its resize (src/shrink/files.ts); the
 * new table read back as planned, once from its bytes before any byte moved and once from the disk.
 */
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { Appliance } from '../engines/appliance/guestfish.js';
import { sliceReader, type BlockReader } from '../disk/types.js';
import type { ProbeResult } from '../fs/types.js';
import { gptOverheadLbas } from '../layout/rewrite/gpt.js';
import { logicalLeadBytes } from '../layout/rewrite/mbr.js';
import { checkRewrite, checkTableAt, readTableBytes, rewriteTable } from '../layout/rewrite/table.js';
import type { SectorWrite } from '../layout/rewrite/types.js';
import type { Layout, Volume } from '../layout/types.js';
import { checkBtrfs, shrinkBtrfs } from './btrfs.js';
import { checkNtfs, shrinkNtfs } from './ntfs.js';
import { decideShrink, type ShrinkDecision } from './decide.js';
import { checkExt, shrinkExt } from './ext.js';
import { checkFilesAfter, type FileListing } from './files.js';
import { readLvmDecision, shrinkLastLv, type LvRow } from './lvm.js';
import type { FsResized, ShrinkMargin } from './margin.js';
import { planLayout, type ShrinkLayout, type SizedVolume } from './plan.js';
import { alignUp } from '../util/size.js';

/** One volume in the report: old and new size and place, what was done, or why it kept its size. */
export interface ShrinkVolumeReport {
  readonly name: string;
  readonly oldOffsetBytes: number;
  readonly newOffsetBytes: number;
  readonly oldSizeBytes: number;
  readonly newSizeBytes: number;
  readonly action: 'resized' | 'remade' | 'kept';
  /** resized: the filesystem's minimum (resize2fs -M) and the margin; kept: why. */
  readonly minimumBytes?: number;
  readonly marginBytes?: number;
  /** resized: the regular files whose checksums were the same before the resize and after the moves (src/shrink/files.ts). */
  readonly filesChecked?: number;
  readonly reason?: string;
}

/** The report's shrink section. */
export interface ShrinkReport {
  readonly virtualSizeBeforeBytes: number;
  readonly virtualSizeAfterBytes: number;
  /** The partitions in disk order, each LVM PV followed by its logical volumes (offsets on the disk; an LV keeps its place in its PV). */
  readonly volumes: ShrinkVolumeReport[];
}

/** What the shrink works on. */
export interface ShrinkTarget {
  readonly appliance: Appliance;
  /** The overlay as the host reads it (the table's old bytes are read here, before anything moves). */
  readonly reader: BlockReader;
  readonly layout: Layout;
  readonly filesystems: ReadonlyMap<string, ProbeResult>;
  readonly margin: ShrinkMargin;
  /** A private directory for the table's bytes on their way into the appliance. */
  readonly workDir: string;
  readonly say: (text: string) => void;
}

/** A tool's version banner (`e2fsck 1.47.0 (5-Feb-2023)`): it says nothing about the failure. */
const VERSION_BANNER = /[\w.-]+ \d+\.\d+(?:\.\d+)? \(\d{1,2}-\w{3}-\d{4}\)/g;

/** A tool's multi-line message as one line, without its version banner (kept when it is all the tool said). */
export function oneLine(message: string): string {
  const said = message
    .split('\n')
    .map((l) => l.replace(VERSION_BANNER, '').replace(/^(\w[\w-]*): \1:/, '$1:').trim())
    .filter((l) => l !== '' && !/^[\w-]+:$/.test(l))
    .join('; ');
  return said || message.split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
}

/** A failed step, named. */
function stepFailed(step: string, err: unknown): SparsifyError {
  const why = oneLine(err instanceof Error ? err.message : String(err));
  return new SparsifyError('TOOL_FAILED', `--shrink: ${step} failed: ${why}`, { cause: err, hint: 'the input is unchanged and no output was written' });
}

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw stepFailed(name, err);
  }
}

/** Shrinks the disk (see the module comment) and says what each volume became. */
export async function shrinkDisk(t: ShrinkTarget): Promise<ShrinkReport> {
  const { appliance: g, layout } = t;
  if (layout.table === 'none') throw new SparsifyError('UNSUPPORTED', '--shrink needs a partitioned disk: this one has no partition table');
  const tableBytes = await step('reading the partition table', () => readTableBytes(t.reader, layout));
  const sb = layout.sectorSizeBytes;
  const sized: SizedVolume[] = [];
  const reports = new Map<string, VolumeDone['report']>();
  const lvRows = new Map<string, readonly LvRow[]>();
  const checks: Check[] = [];
  for (const volume of layout.volumes) {
    const fs = t.filesystems.get(volume.name) ?? { type: 'unknown' as const };
    const decision = decideShrink(volume, fs);
    const done = await shrinkVolume(t, volume, decision, sb);
    sized.push(done.sized);
    reports.set(volume.name, done.report);
    if (done.lvs) lvRows.set(volume.name, done.lvs);
    checks.push(...(done.checks ?? []));
  }
  const gptBackupBytes = tableBytes.table === 'gpt' ? gptOverheadLbas(tableBytes.gpt.header).backupLbas * sb : 0;
  const leads = tableBytes.table === 'mbr' ? logicalLeadBytes(tableBytes.mbr) : new Map<number, number>();
  const plan = planLayout(layout, sized, gptBackupBytes, leads);
  // The new table is made and read back before any byte moves: a plan it refuses moves nothing.
  const writes = await step('making the new partition table', async () => {
    const made = rewriteTable(tableBytes, plan.places, plan.newDiskBytes);
    await checkRewrite(made, plan.newDiskBytes, layout.table as 'gpt' | 'mbr', plan.places, layout.volumes.length);
    return made;
  });
  // A PV in use by device-mapper keeps its partition busy: the kernel would refuse to read the new table.
  const lvm = layout.volumes.some((v) => t.filesystems.get(v.name)?.type === 'lvm-pv');
  if (lvm) await step('deactivating the LVM volume groups (vgchange -an)', () => g.run('vg-activate-all', 'false'));
  await moveData(t, plan);
  await writeTable(t, writes, lvm);
  // What the appliance wrote, read back from the overlay as the rest of the run will read it.
  await step('reading the new partition table back', () =>
    checkTableAt(sliceReader(t.reader, 0, plan.newDiskBytes), layout.table as 'gpt' | 'mbr', plan.places, layout.volumes.length, 'the partition table on the disk is not the one planned'),
  );
  if (lvm) await step('activating the LVM volume groups at their new place (vgchange -ay)', () => g.run('vg-activate-all', 'true'));
  await remakeSwaps(t, sized);
  // e2fsck -f -p: a problem preen may not fix is an error. libguestfs lets exit 1 (fixed) through; the tests check -fn on OUT.
  for (const c of checks) {
    if (c.kind === 'pvresize') await step(`fitting the PV ${c.device} to its new partition (pvresize)`, () => g.run('pvresize', c.device));
    else if (c.kind === 'ntfs') await step(`checking ${c.device} after the resize (ntfsresize --info)`, () => checkNtfs(g, c.device));
    else if (c.kind === 'btrfs') await checkBtrfs(g, c.device, step, 'after');
    else await checkExt(g, c.device, step);
  }
  for (const c of checks) if (c.files) await checkFilesAfter(g, c.files, t.workDir, step);
  return {
    virtualSizeBeforeBytes: layout.diskSizeBytes,
    virtualSizeAfterBytes: plan.newDiskBytes,
    volumes: layout.volumes.flatMap((v) => {
      const newOffsetBytes = plan.offsets.get(v.name) ?? v.offsetBytes;
      const inside = (lvRows.get(v.name) ?? []).map((r) => lvReport(r, v.offsetBytes, newOffsetBytes));
      return [{ ...reports.get(v.name)!, newOffsetBytes }, ...inside];
    }),
  };
}

/** What runs once everything sits at its new place: pvresize fitting a PV to its shorter partition, then the checks (e2fsck -f -p; ntfsresize --info reading the volume there; btrfs check), then the files compared with their listing before the resize. */
interface Check {
  readonly device: string;
  readonly kind: 'pvresize' | 'ext' | 'ntfs' | 'btrfs';
  readonly files?: FileListing;
}

/** What shrinking one volume gave: its new size, its report line, the LVs inside it, and what to check once it sits at its new place. */
interface VolumeDone {
  readonly sized: SizedVolume;
  readonly report: Omit<ShrinkVolumeReport, 'newOffsetBytes'>;
  readonly lvs?: readonly LvRow[];
  readonly checks?: readonly Check[];
}

/** An LV's report line: it keeps its place inside its PV, which moved from `pvOldBytes` to `pvNewBytes`. */
function lvReport(r: LvRow, pvOldBytes: number, pvNewBytes: number): ShrinkVolumeReport {
  return {
    name: r.volume.name,
    oldOffsetBytes: pvOldBytes + r.volume.offsetBytes,
    newOffsetBytes: pvNewBytes + r.volume.offsetBytes,
    oldSizeBytes: r.volume.sizeBytes,
    newSizeBytes: r.newSizeBytes,
    action: r.action,
    ...(r.minimumBytes !== undefined ? { minimumBytes: r.minimumBytes } : {}),
    ...(r.marginBytes !== undefined ? { marginBytes: r.marginBytes } : {}),
    ...(r.filesChecked !== undefined ? { filesChecked: r.filesChecked } : {}),
    ...(r.reason !== undefined ? { reason: r.reason } : {}),
  };
}

/** Resizes one volume as decided; its new size and the bytes that must move with it. */
async function shrinkVolume(t: ShrinkTarget, volume: Volume, decision: ShrinkDecision, sb: number): Promise<VolumeDone> {
  const base = { name: volume.name, oldOffsetBytes: volume.offsetBytes, oldSizeBytes: volume.sizeBytes };
  const kept = (reason: string) => ({
    sized: { volume, newSizeBytes: volume.sizeBytes, keepBytes: volume.sizeBytes },
    report: { ...base, newSizeBytes: volume.sizeBytes, action: 'kept' as const, reason },
  });
  if (decision.action === 'keep') return kept(decision.reason);
  if (decision.action === 'remake-swap') {
    return { sized: { volume, newSizeBytes: volume.sizeBytes, keepBytes: 0 }, report: { ...base, newSizeBytes: volume.sizeBytes, action: 'remade' } };
  }
  const g = t.appliance;
  const dev = volume.name;
  const resized = (keepBytes: number, extra: Pick<ShrinkVolumeReport, 'minimumBytes' | 'marginBytes' | 'filesChecked'>, rest: Pick<VolumeDone, 'lvs' | 'checks'>): VolumeDone => {
    const newSizeBytes = alignUp(keepBytes, sb);
    return { sized: { volume, newSizeBytes, keepBytes }, report: { ...base, newSizeBytes, action: 'resized', ...extra }, ...rest };
  };
  if (decision.action === 'resize-lvm') {
    const d = await step(`reading the LVM metadata of ${dev}`, () => readLvmDecision(t.reader, volume));
    if (d.action === 'keep') return { ...kept(d.reason), lvs: d.rows };
    t.say(`Shrink ${dev}: its last logical volume, then the physical volume`);
    const r = await shrinkLastLv(g, d, t.margin, sb, t.workDir, step);
    const fit = r.pvNewSizeBytes < volume.sizeBytes ? [{ device: dev, kind: 'pvresize' as const }] : [];
    return resized(r.pvNewSizeBytes, {}, { lvs: r.rows, checks: [...fit, ...r.checkExt.map(({ device, files }) => ({ device, kind: 'ext' as const, files }))] });
  }
  t.say(`Shrink ${dev}: check, measure and resize its filesystem`);
  if (decision.action === 'resize-ntfs') {
    const r = await shrinkNtfs(g, dev, volume.sizeBytes, t.margin, t.workDir, step);
    return resized(r.targetBytes, fsReport(r), { checks: [{ device: dev, kind: 'ntfs', files: r.files }] });
  }
  if (decision.action === 'resize-btrfs') {
    const r = await shrinkBtrfs(g, dev, volume.sizeBytes, t.filesystems.get(dev)?.blockSizeBytes, t.margin, sb, t.workDir, step);
    return resized(r.targetBytes, fsReport(r), { checks: [{ device: dev, kind: 'btrfs', files: r.files }] });
  }
  const r = await shrinkExt(g, dev, t.margin, sb, t.workDir, step);
  return resized(r.targetBytes, fsReport(r), { checks: [{ device: dev, kind: 'ext', files: r.files }] });
}

/** A resized filesystem's report fields. */
function fsReport(r: FsResized): Pick<ShrinkVolumeReport, 'minimumBytes' | 'marginBytes' | 'filesChecked'> {
  return { minimumBytes: r.minimumBytes, marginBytes: r.marginBytes, filesChecked: r.files.files };
}

/** Copies each moving partition down, in disk order. */
async function moveData(t: ShrinkTarget, plan: ShrinkLayout): Promise<void> {
  for (const m of plan.moves) {
    t.say(`Move ${m.name} down by ${m.fromBytes - m.toBytes} bytes`);
    await step(`moving ${m.name}`, () =>
      t.appliance.run('copy-device-to-device', '/dev/sda', '/dev/sda', `srcoffset:${m.fromBytes}`, `destoffset:${m.toBytes}`, `size:${m.lengthBytes}`),
    );
  }
}

/** Writes the new table through the appliance and makes its kernel read it. */
async function writeTable(t: ShrinkTarget, writes: readonly SectorWrite[], lvm: boolean): Promise<void> {
  t.say('Rewrite the partition table');
  await step('writing the partition table', async () => {
    for (const [i, w] of writes.entries()) {
      const file = join(t.workDir, `table-${i}.bin`);
      await writeFile(file, w.bytes);
      try {
        await t.appliance.run('upload-offset', file, '/dev/sda', String(w.offsetBytes));
      } finally {
        await rm(file, { force: true });
      }
    }
    await t.appliance.run('sync');
    // The appliance's udev rules activate a VG again when its PV's bytes change (the move, the table writes).
    if (lvm) await t.appliance.run('vg-activate-all', 'false');
    await t.appliance.run('blockdev-rereadpt', '/dev/sda');
  });
}

/** Makes each swap area again at its new place, with its UUID and label. */
async function remakeSwaps(t: ShrinkTarget, sized: readonly SizedVolume[]): Promise<void> {
  for (const s of sized) {
    const fs = t.filesystems.get(s.volume.name);
    if (fs?.type !== 'swap' || s.keepBytes !== 0) continue;
    const args = [...(fs.label ? [`label:${fs.label}`] : []), ...(fs.uuid ? [`uuid:${fs.uuid}`] : [])];
    await step(`making the swap area ${s.volume.name} again`, () => t.appliance.run('mkswap', s.volume.name, ...args));
  }
  await step('syncing the disk', () => t.appliance.run('sync'));
}
