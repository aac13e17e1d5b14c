/**
 * Which LVs of a VG can be read as plain byte ranges of one PV, and which extents of that PV no
 * segment uses. Only a linear LV (every segment "striped" with one stripe) whose segments lie
 * on this PV end to end is a volume; anything else (thin, raid, mirror, snapshot origin or
 * store, striped, several PVs, gaps, a pvmove in progress) is reported with the reason.
 */
import { quoteText } from './lvm-config.js';
import type { Fail, LvmLv, LvmPv, LvmPvArea, LvmSegment, LvmVg } from './lvm-vg.js';

/** A linear LV on this PV, in extents. */
export interface LinearLv {
  readonly name: string;
  readonly firstPe: number;
  readonly extentCount: number;
  /** The LV is read-only (no WRITE status). */
  readonly readOnly: boolean;
}

/** How the LVs of a VG map onto one of its PVs. */
export interface LvmPvMap {
  readonly linear: readonly LinearLv[];
  readonly unhandled: readonly { readonly name: string; readonly reason: string }[];
  /** Extent ranges [start, end) of this PV that some segment uses, sorted and merged. */
  readonly usedExtents: readonly { readonly start: number; readonly end: number }[];
  /** False when a segment type we do not know may use extents we cannot see. */
  readonly usedIsComplete: boolean;
  readonly notes: readonly string[];
}

/**
 * Segment types of lvm2 2.03 (lib/metadata/segtype.h). All but "striped" and pvmove's "mirror"
 * keep their data in sub-LVs, never directly in PV extents.
 */
const KNOWN_TYPES = new Set([
  'striped', 'mirror', 'snapshot', 'thin', 'thin-pool', 'cache', 'cache-pool', 'writecache',
  'integrity', 'vdo', 'vdo-pool', 'error', 'zero', 'free',
]);

function isKnownType(type: string): boolean {
  return KNOWN_TYPES.has(type) || /^raid(0|0_meta|1|10|10_near|4|5|5_[a-z]+|6|6_[a-z0-9_]+)$/.test(type);
}

interface Reference {
  readonly parent: LvmLv;
  readonly segment: LvmSegment;
  readonly key: string;
}

/** Sub-LV name → the first segment (of another LV) that is built on it. */
function referencesOf(vg: LvmVg): Map<string, Reference> {
  const refs = new Map<string, Reference>();
  for (const lv of vg.lvs.values()) {
    for (const segment of lv.segments) {
      for (const { name, key } of segment.lvRefs) {
        if (vg.lvs.has(name) && name !== lv.name && !refs.has(name)) refs.set(name, { parent: lv, segment, key });
      }
    }
  }
  return refs;
}

function referenceReason(ref: Reference): string {
  if (ref.segment.type === 'snapshot') {
    if (ref.key === 'origin') return 'snapshot origin';
    const origin = ref.segment.lvRefs.find((r) => r.key === 'origin')?.name;
    return origin ? `snapshot of ${origin}` : 'snapshot';
  }
  return `used by ${ref.segment.type} LV ${ref.parent.name}`;
}

/** Why a striped-only LV is not one run of this PV, or undefined when it is. */
function layoutReason(lv: LvmLv, pv: LvmPv): string | undefined {
  const striped = lv.segments.find((s) => s.stripeCount > 1);
  if (striped) return `striped over ${striped.stripeCount} stripes`;
  const stacked = lv.segments.find((s) => s.lvRefs.length > 0);
  if (stacked) return `stacked on LV ${stacked.lvRefs[0]!.name} (a pvmove in progress?)`;
  const areas = lv.segments.map((s) => s.pvAreas[0]!);
  if (areas.some((a) => a.pvKey !== pv.key)) return 'spans PVs';
  for (let i = 1; i < areas.length; i++) {
    const [prev, cur] = [areas[i - 1]!, areas[i]!];
    if (cur.firstPe !== prev.firstPe + prev.extentCount) return 'segments are not contiguous on the PV';
  }
  return undefined;
}

/** Why an LV is not a plain volume, or undefined when it is one. */
function unhandledReason(lv: LvmLv, pv: LvmPv, refs: ReadonlyMap<string, Reference>): string | undefined {
  if (lv.segments.length === 0) return 'no segments';
  const other = lv.segments.find((s) => s.type !== 'striped');
  if (other) return `segment type ${other.type}`;
  const ref = refs.get(lv.name);
  if (ref) return referenceReason(ref);
  return layoutReason(lv, pv);
}

/** Whether lvs shows the LV to a user: visible ones, and a snapshot's store (shown by its name). */
function isUserFacing(lv: LvmLv, refs: ReadonlyMap<string, Reference>): boolean {
  if (lv.segments.length > 0 && lv.segments.every((s) => s.type === 'snapshot')) return false;
  const ref = refs.get(lv.name);
  return lv.visible || (ref?.segment.type === 'snapshot' && ref.key === 'cow_store');
}

/** Whether an LV of striped segments lies wholly on other PVs (reported when that PV is read). */
function whollyElsewhere(lv: LvmLv, pv: LvmPv): boolean {
  const areas = lv.segments.flatMap((s) => s.pvAreas);
  const plain = lv.segments.every((s) => s.type === 'striped' && s.lvRefs.length === 0);
  return plain && areas.every((a) => a.pvKey !== pv.key);
}

/** This PV's areas, bounds-checked; areas of guessed length are clipped to the PV instead. */
function usedExtents(vg: LvmVg, pv: LvmPv, fail: Fail): LvmPvMap['usedExtents'] {
  const exact: Array<LvmPvArea & { lv: string }> = [];
  const ranges: Array<{ start: number; end: number }> = [];
  for (const lv of vg.lvs.values()) {
    for (const area of lv.segments.flatMap((s) => s.pvAreas)) {
      if (area.pvKey !== pv.key) continue;
      const end = area.firstPe + area.extentCount;
      if (area.exact && end > pv.peCount) {
        fail(`LV ${lv.name} uses extents ${area.firstPe}–${end - 1}, beyond the ${pv.peCount} extents of this PV`);
      }
      if (area.exact) exact.push({ ...area, lv: lv.name });
      ranges.push({ start: Math.min(area.firstPe, pv.peCount), end: Math.min(end, pv.peCount) });
    }
  }
  exact.sort((a, b) => a.firstPe - b.firstPe);
  for (let i = 1; i < exact.length; i++) {
    const [a, b] = [exact[i - 1]!, exact[i]!];
    if (b.firstPe < a.firstPe + a.extentCount) {
      fail(`LV ${a.lv} and LV ${b.lv} both use extent ${b.firstPe} of this PV`);
    }
  }
  return mergeRanges(ranges);
}

function mergeRanges(ranges: Array<{ start: number; end: number }>): Array<{ start: number; end: number }> {
  const merged: Array<{ start: number; end: number }> = [];
  for (const r of ranges.filter((x) => x.end > x.start).sort((a, b) => a.start - b.start)) {
    const last = merged[merged.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else merged.push({ ...r });
  }
  return merged;
}

/** A stripe must name a PV or an LV of the VG (pvmove stacks LVs on its pvmove0 LV). */
function checkStripeTargets(vg: LvmVg, fail: Fail): void {
  for (const lv of vg.lvs.values()) {
    for (const segment of lv.segments) {
      if (segment.type !== 'striped') continue;
      const unknown = segment.lvRefs.find((r) => !vg.lvs.has(r.name));
      if (unknown) fail(`LV ${lv.name}: a stripe names ${quoteText(unknown.name)}, neither a PV nor an LV of the VG`);
    }
  }
}

/** Classifies every LV of `vg` for the PV `pv` and collects the extents in use on it. */
export function mapLvmPv(vg: LvmVg, pv: LvmPv, fail: Fail): LvmPvMap {
  checkStripeTargets(vg, fail);
  const refs = referencesOf(vg);
  const linear: LinearLv[] = [];
  const unhandled: Array<{ name: string; reason: string }> = [];
  const notes: string[] = [];
  const unknown = new Set<string>();
  for (const lv of vg.lvs.values()) {
    for (const s of lv.segments) if (!isKnownType(s.type)) unknown.add(s.type);
    if (!isUserFacing(lv, refs) || whollyElsewhere(lv, pv)) continue;
    const reason = unhandledReason(lv, pv, refs);
    if (reason) unhandled.push({ name: lv.name, reason });
    else linear.push({ name: lv.name, firstPe: lv.segments[0]!.pvAreas[0]!.firstPe, extentCount: totalExtents(lv), readOnly: !lv.writable });
  }
  for (const type of unknown) notes.push(`unknown LVM segment type "${type}": no extent of this PV is treated as free`);
  return { linear, unhandled, usedExtents: usedExtents(vg, pv, fail), usedIsComplete: unknown.size === 0, notes };
}

function totalExtents(lv: LvmLv): number {
  return lv.segments.reduce((sum, s) => sum + s.extentCount, 0);
}
