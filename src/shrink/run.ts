/**
 * Shrinking one disk inside a launched libguestfs appliance whose only drive is the run's
 * writable overlay (the input is its backing file and is never written). Steps, each named in
 * its error: check each ext filesystem (e2fsck -f), measure its minimum (resize2fs -P), resize it
 * to the minimum plus the margin; move the partitions after it down (copy-device-to-device,
 * forward, to lower offsets: safe, see plan.ts); rewrite the partition table (src/layout/rewrite/)
 * through the appliance, so its kernel sees every write in order; make each swap area again at
 * its new place with its UUID and label; then check: e2fsck -fn clean on every resized
 * filesystem, and the table reads back as planned.
 */
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { Appliance } from '../engines/appliance/guestfish.js';
import type { BlockReader } from '../disk/types.js';
import type { ProbeResult } from '../fs/types.js';
import { gptOverheadLbas } from '../layout/rewrite/gpt.js';
import { checkRewrite, readTableBytes, rewriteTable } from '../layout/rewrite/table.js';
import type { SectorWrite } from '../layout/rewrite/types.js';
import type { Layout, Volume } from '../layout/types.js';
import { decideShrink, type ShrinkDecision } from './decide.js';
import { marginBytes, type ShrinkMargin } from './margin.js';
import { planLayout, type ShrinkLayout, type SizedVolume } from './plan.js';

/** One volume in the report: old and new size and place, what was done, or why it kept its size. */
export interface ShrinkVolumeReport {
  readonly name: string;
  readonly oldOffsetBytes: number;
  readonly newOffsetBytes: number;
  readonly oldSizeBytes: number;
  readonly newSizeBytes: number;
  readonly action: 'resized' | 'remade' | 'kept';
  /** resized: the filesystem's minimum (resize2fs -P) and the margin; kept: why. */
  readonly minimumBytes?: number;
  readonly marginBytes?: number;
  readonly reason?: string;
}

/** The report's shrink section. */
export interface ShrinkReport {
  readonly virtualSizeBeforeBytes: number;
  readonly virtualSizeAfterBytes: number;
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

/** A failed step, named. */
function stepFailed(step: string, err: unknown): SparsifyError {
  const why = err instanceof Error ? err.message : String(err);
  return new SparsifyError('TOOL_FAILED', `--shrink: ${step} failed: ${why}`, { cause: err, hint: 'the input is unchanged and no output was written' });
}

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw stepFailed(name, err);
  }
}

/** Runs a shell line in the appliance and returns its output; the line's last word is its exit status. */
async function shell(g: Appliance, line: string): Promise<{ out: string; status: number }> {
  const out = await g.run('debug', 'sh', `${line}; echo "exit=$?"`);
  const m = /exit=(\d+)\s*$/.exec(out);
  return { out, status: m ? Number(m[1]) : -1 };
}

/** resize2fs -P's estimate, in bytes. */
async function ext2MinimumBytes(g: Appliance, device: string): Promise<{ minimumBytes: number; blockBytes: number; sizeBytes: number }> {
  const { out, status } = await shell(g, `resize2fs -P ${device} 2>&1`);
  const blocks = /minimum size of the filesystem:\s*(\d+)/.exec(out);
  if (status !== 0 || !blocks) throw new Error(`resize2fs -P ${device}: ${out.trim()}`);
  const tune = await g.run('tune2fs-l', device);
  const blockBytes = Number(/Block size:\s*(\d+)/.exec(tune)?.[1]);
  const blockCount = Number(/Block count:\s*(\d+)/.exec(tune)?.[1]);
  if (!blockBytes || !blockCount) throw new Error(`tune2fs -l ${device}: no block size or count`);
  return { minimumBytes: Number(blocks[1]) * blockBytes, blockBytes, sizeBytes: blockCount * blockBytes };
}

/** e2fsck -fn: throws unless the filesystem is clean. */
async function fsckClean(g: Appliance, device: string): Promise<void> {
  const { out, status } = await shell(g, `e2fsck -fn ${device} 2>&1`);
  if (status !== 0) throw new Error(`e2fsck -fn ${device} exited ${status}: ${out.trim().split('\n').slice(-3).join(' / ')}`);
}

const alignUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** Shrinks the disk (see the module comment) and says what each volume became. */
export async function shrinkDisk(t: ShrinkTarget): Promise<ShrinkReport> {
  const { appliance: g, layout } = t;
  if (layout.table === 'none') throw new SparsifyError('UNSUPPORTED', '--shrink needs a partitioned disk: this one has no partition table');
  const tableBytes = await step('reading the partition table', () => readTableBytes(t.reader, layout));
  const sb = layout.sectorSizeBytes;
  const sized: SizedVolume[] = [];
  const reports = new Map<string, Omit<ShrinkVolumeReport, 'newOffsetBytes'>>();
  for (const volume of layout.volumes) {
    const fs = t.filesystems.get(volume.name) ?? { type: 'unknown' as const };
    const decision = decideShrink(volume, fs);
    const done = await shrinkVolume(t, volume, fs, decision, sb);
    sized.push(done.sized);
    reports.set(volume.name, done.report);
  }
  const gptBackupBytes = tableBytes.table === 'gpt' ? gptOverheadLbas(tableBytes.gpt.header).backupLbas * sb : 0;
  const plan = planLayout(layout, sized, gptBackupBytes);
  // The new table is made and read back before any byte moves: a plan it refuses moves nothing.
  const writes = await step('making the new partition table', async () => {
    const made = rewriteTable(tableBytes, plan.places, plan.newDiskBytes);
    await checkRewrite(made, plan.newDiskBytes, layout.table as 'gpt' | 'mbr', plan.places, layout.volumes.length);
    return made;
  });
  await moveData(t, plan);
  await writeTable(t, writes);
  await remakeSwaps(t, sized);
  for (const s of sized) {
    if (reports.get(s.volume.name)?.action === 'resized') await step(`checking ${s.volume.name} after the resize (e2fsck -fn)`, () => fsckClean(g, s.volume.name));
  }
  return {
    virtualSizeBeforeBytes: layout.diskSizeBytes,
    virtualSizeAfterBytes: plan.newDiskBytes,
    volumes: layout.volumes.map((v) => ({ ...reports.get(v.name)!, newOffsetBytes: plan.offsets.get(v.name) ?? v.offsetBytes })),
  };
}

/** Resizes one volume as decided; its new size and the bytes that must move with it. */
async function shrinkVolume(t: ShrinkTarget, volume: Volume, fs: ProbeResult, decision: ShrinkDecision, sb: number): Promise<{ sized: SizedVolume; report: Omit<ShrinkVolumeReport, 'newOffsetBytes'> }> {
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
  t.say(`Shrink ${dev}: check, measure and resize its filesystem`);
  await step(`checking ${dev} before the resize (e2fsck -f)`, () => g.run('e2fsck', dev, 'forceall:true'));
  const m = await step(`measuring ${dev} (resize2fs -P)`, () => ext2MinimumBytes(g, dev));
  const margin = marginBytes(t.margin, m.minimumBytes);
  const targetBytes = Math.min(alignUp(m.minimumBytes + margin, Math.max(m.blockBytes, sb)), m.sizeBytes);
  if (targetBytes >= m.sizeBytes) return kept(`already within its margin of resize2fs' minimum (${m.minimumBytes} bytes)`);
  await step(`resizing ${dev} to ${targetBytes} bytes (resize2fs)`, () => g.run('resize2fs-size', dev, String(targetBytes)));
  const newSizeBytes = alignUp(targetBytes, sb);
  return {
    sized: { volume, newSizeBytes, keepBytes: targetBytes },
    report: { ...base, newSizeBytes, action: 'resized', minimumBytes: m.minimumBytes, marginBytes: margin },
  };
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
async function writeTable(t: ShrinkTarget, writes: readonly SectorWrite[]): Promise<void> {
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
