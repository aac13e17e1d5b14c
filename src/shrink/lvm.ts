/**
 * Shrinking an LVM2 physical volume (issue 12: "the last LV, then the PV"). LVM never moves
 * extents by itself without pvmove, so only the end of the PV can go: the LV whose extents are
 * last shrinks (its ext filesystem first, src/shrink/ext.ts, then lvresize to it rounded up to
 * whole extents); the PV's partition then ends right after the last extent in use (free extents
 * at the end go too), and once the new table is in place `pvresize` fits the PV to it (with no
 * size: `pvresize --setphysicalvolumesize` asks for a confirmation the appliance cannot give, and
 * LVM reads a PV shorter than its metadata says, with a warning, as long as no LV lies past its
 * end). Every other LV keeps its size and its place in the PV; the PV moves down whole with its
 * partition. What blocks: a VG on several PVs, segment types
 * whose extents are not known, a metadata copy at the PV's end, and, for the LV itself, anything
 * but a clean, writable ext2/3/4 (each kept with its reason in the report).
 */
import type { Appliance } from '../engines/appliance/guestfish.js';
import { sliceReader, type BlockReader } from '../disk/types.js';
import { isSparsifyError } from '../errors.js';
import { probeVolume } from '../fs/probe.js';
import type { ProbeResult } from '../fs/types.js';
import { readLvm, type LvmResult } from '../layout/lvm.js';
import type { Volume } from '../layout/types.js';
import { shrinkExt } from './ext.js';
import type { FileListing } from './files.js';
import type { ShrinkMargin, Step } from './margin.js';
import { alignUp } from '../util/size.js';

/** lvresize in the libguestfs API takes whole MiB. */
const MIB = 1024 * 1024;

/** One LV of the PV in the report; offsets are PV-relative (the LVs move with their PV). */
export interface LvRow {
  readonly volume: Volume;
  readonly newSizeBytes: number;
  readonly action: 'resized' | 'kept';
  readonly minimumBytes?: number;
  readonly marginBytes?: number;
  /** resized: the regular files whose checksums were compared before and after (src/shrink/files.ts). */
  readonly filesChecked?: number;
  readonly reason?: string;
}

/** What may shrink on one PV, decided from its metadata and the last LV's filesystem alone. */
export type LvmShrinkDecision =
  | { readonly action: 'keep'; readonly reason: string; readonly rows: readonly LvRow[] }
  | {
      readonly action: 'shrink';
      readonly extentSizeBytes: number;
      /** The LV to shrink: the one whose extents end where the used extents end. */
      readonly lastLv?: Volume;
      /** PV-relative byte where the extents in use end (before the LV shrinks). */
      readonly usedEndBytes: number;
      /** Every other linear LV of the PV, kept with its reason (and the last one, when it cannot shrink). */
      readonly rows: readonly LvRow[];
    };

const NOT_LAST = 'not the last LV of its PV';

const keptRow = (volume: Volume, reason: string): LvRow => ({ volume, newSizeBytes: volume.sizeBytes, action: 'kept', reason });

/** Why the last LV's filesystem cannot shrink, or undefined when it can. */
function lastLvBlocker(lv: Volume, fs: ProbeResult): string | undefined {
  if (lv.readOnly) return 'LVM marks it read-only: kept its size';
  if (fs.type !== 'ext2' && fs.type !== 'ext3' && fs.type !== 'ext4') return `only ext2/3/4 shrinks inside an LV, this holds ${fs.type}: kept its size`;
  if (fs.dirty) return 'its journal needs recovery: kept its size (boot the guest or fsck it first)';
  return undefined;
}

/** The decision for one PV (see the module comment); `lastFs` is the probe of the LV last on the PV, when one is. */
export function decideLvmShrink(lvm: LvmResult, lastFs: ProbeResult | undefined): LvmShrinkDecision {
  const lvs = [...lvm.volumes].sort((a, b) => a.offsetBytes - b.offsetBytes);
  const keep = (reason: string, rows = lvs.map((v) => keptRow(v, reason))): LvmShrinkDecision => ({ action: 'keep', reason, rows });
  if (lvm.vgName === '') return keep('a PV without its volume group here: kept its size');
  if (lvm.pvCount !== 1) return keep(`its volume group ${lvm.vgName} spans ${lvm.pvCount} PVs: kept its size`);
  if (!lvm.usedIsComplete) return keep('it holds LVM segment types whose extents are not known: kept its size');
  const { startBytes, endBytes } = lvm.extentArea;
  if (lvm.structures.ranges.some((r) => r.start >= endBytes)) return keep('a metadata copy lies at its end (pvresize would have to move it): kept its size');
  const tail = lvm.freeOnPv.ranges.at(-1);
  const usedEndBytes = tail && tail.end === endBytes ? tail.start : endBytes;
  if (usedEndBytes <= startBytes) return keep('no extent of it is in use: kept its size');
  const last = lvs.at(-1);
  const lastIsAtEnd = last !== undefined && last.offsetBytes + last.sizeBytes === usedEndBytes;
  const blocker = !lastIsAtEnd ? undefined : lastFs ? lastLvBlocker(last, lastFs) : 'its filesystem was not probed: kept its size';
  const lastReason = lastIsAtEnd ? blocker : `${NOT_LAST} (an LV that is not one linear run follows it): kept its size`;
  const rows = lvs.flatMap((v) => (v !== last ? [keptRow(v, `${NOT_LAST}: kept its size`)] : lastReason ? [keptRow(v, lastReason)] : []));
  const lvShrinks = lastIsAtEnd && !blocker;
  if (!lvShrinks && usedEndBytes === endBytes) return keep('neither its last LV nor free extents at its end can go: kept its size', rows);
  return { action: 'shrink', extentSizeBytes: lvm.extentSizeBytes, ...(lvShrinks ? { lastLv: last } : {}), usedEndBytes, rows };
}

/** What shrinking the PV's last LV did: the PV's new size (PV-relative end of the last extent in use), the LV rows, and the LV to check at the end, with its files as listed before. */
export interface LvmShrunk {
  readonly pvNewSizeBytes: number;
  readonly rows: readonly LvRow[];
  readonly checkExt: readonly { readonly device: string; readonly files: FileListing }[];
}

/** Reads the PV's metadata and probes its last LV on the overlay, as the host reads it; a damaged PV is kept with its reason. */
export async function readLvmDecision(reader: BlockReader, pv: Volume): Promise<LvmShrinkDecision> {
  const pvReader = sliceReader(reader, pv.offsetBytes, pv.sizeBytes);
  let lvm: LvmResult;
  try {
    lvm = await readLvm(pvReader, pv.name);
  } catch (err) {
    if (!isSparsifyError(err, 'BAD_LAYOUT')) throw err;
    return { action: 'keep', reason: `its LVM metadata cannot be read (${(err as Error).message}): kept its size`, rows: [] };
  }
  const last = [...lvm.volumes].sort((a, b) => a.offsetBytes - b.offsetBytes).at(-1);
  const lastFs = last ? await probeVolume(sliceReader(pvReader, last.offsetBytes, last.sizeBytes)) : undefined;
  return decideLvmShrink(lvm, lastFs);
}

/** Shrinks the last LV of a 'shrink' decision in the appliance (its LVs active, as libguestfs leaves them at launch); the PV is fitted to its partition later. */
export async function shrinkLastLv(
  g: Appliance,
  d: Extract<LvmShrinkDecision, { action: 'shrink' }>,
  margin: ShrinkMargin,
  sectorBytes: number,
  workDir: string,
  step: Step,
): Promise<LvmShrunk> {
  let usedEndBytes = d.usedEndBytes;
  const rows = [...d.rows];
  const checkExt: { device: string; files: FileListing }[] = [];
  const lv = d.lastLv;
  if (lv) {
    const r = await shrinkExt(g, lv.name, margin, sectorBytes, workDir, step);
    const mib = Math.ceil(r.targetBytes / MIB);
    // LVM rounds the size up to whole extents.
    const lvNewBytes = Math.min(alignUp(mib * MIB, d.extentSizeBytes), lv.sizeBytes);
    if (lvNewBytes < lv.sizeBytes) {
      await step(`reducing ${lv.name} to ${lvNewBytes} bytes (lvresize)`, () => g.run('lvresize', lv.name, String(mib)));
      await step(`measuring ${lv.name} (blockdev --getsize64)`, async () => {
        const got = Number(await g.run('blockdev-getsize64', lv.name));
        if (got !== lvNewBytes) throw new Error(`${lv.name} is ${got} bytes after lvresize, not the ${lvNewBytes} planned`);
      });
    }
    usedEndBytes = lv.offsetBytes + lvNewBytes;
    rows.push({ volume: lv, newSizeBytes: lvNewBytes, action: 'resized', minimumBytes: r.minimumBytes, marginBytes: r.marginBytes, filesChecked: r.files.files });
    checkExt.push({ device: lv.name, files: r.files });
  }
  rows.sort((a, b) => a.volume.offsetBytes - b.volume.offsetBytes);
  return { pvNewSizeBytes: usedEndBytes, rows, checkExt };
}
