/**
 * The volume group a metadata text describes (lvm2 lib/format_text/import_vsn1.c reads the same
 * tree): one top-level section named after the VG with `extent_size` (sectors),
 * `physical_volumes { pvN { id, pe_start (sectors), pe_count } }` and `logical_volumes { LV {
 * status, segmentN { start_extent, extent_count, type, ... } } }`. A "striped" segment lists
 * `stripes = ["pv0", first_pe, ...]`, one pair per stripe; other segment types name sub-LVs
 * (thin-pool `pool`, raid `raids`, snapshot `origin`/`cow_store`, ...) and, for pvmove's
 * "mirror", PVs.
 */
import { isSection, quoteText, type LvmConfigSection, type LvmConfigValue, type LvmScalar } from './lvm-config.js';

/** Throws BAD_LAYOUT for the metadata text being decoded. */
export type Fail = (what: string) => never;

/** A physical volume of the VG. */
export interface LvmPv {
  /** Its key in the metadata (pv0, pv1, ...), which segments refer to. */
  readonly key: string;
  readonly uuid: string;
  readonly peStartSectors: number;
  readonly peCount: number;
}

/** A run of physical extents a segment occupies on one PV. */
export interface LvmPvArea {
  readonly pvKey: string;
  readonly firstPe: number;
  readonly extentCount: number;
  /** False when the length is a guess (an area in a segment type whose layout we do not model). */
  readonly exact: boolean;
}

/** One segment of a logical volume. */
export interface LvmSegment {
  readonly startExtent: number;
  readonly extentCount: number;
  readonly type: string;
  /** Stripe count of a "striped" segment (1: linear); 0 for other types. */
  readonly stripeCount: number;
  readonly pvAreas: readonly LvmPvArea[];
  /** Other LVs this segment is built on, and under which key. */
  readonly lvRefs: readonly { readonly name: string; readonly key: string }[];
}

/** A logical volume: name, whether lvs shows it, segments in logical-extent order. */
export interface LvmLv {
  readonly name: string;
  readonly visible: boolean;
  /** LVM's WRITE status flag is set (lvchange -p r clears it). */
  readonly writable: boolean;
  readonly segments: readonly LvmSegment[];
}

/** The decoded VG. */
export interface LvmVg {
  readonly name: string;
  readonly seqno: number;
  readonly extentSizeSectors: number;
  readonly pvs: ReadonlyMap<string, LvmPv>;
  readonly lvs: ReadonlyMap<string, LvmLv>;
}

const TEXT_FORMAT_VERSION = 1;
/** lvm2 lib/misc/lvm-string.c validate_name: what may appear in /dev/VG/LV. */
const VALID_NAME = /^(?!-)(?!\.\.?$)[A-Za-z0-9+_.-]{1,127}$/;

/** Segment type names are short words: "striped", "thin-pool", "raid6_ls_6", "cache+CACHE_USES_CACHEVOL". */
const SEGMENT_TYPE = /^[A-Za-z0-9_+-]{1,64}$/;

function checkName(kind: string, name: string, fail: Fail): string {
  return VALID_NAME.test(name) ? name : fail(`${kind} name ${quoteText(name)} is not a valid LVM name`);
}

function get(section: LvmConfigSection, key: string, where: string, fail: Fail): LvmConfigValue {
  const value = section.entries.get(key);
  if (value === undefined) fail(`${where}: '${key}' is missing`);
  return value!;
}

function sectionOf(section: LvmConfigSection, key: string, where: string, fail: Fail): LvmConfigSection {
  const value = get(section, key, where, fail);
  return isSection(value) ? value : fail(`${where}: '${key}' is not a section`);
}

function stringOf(section: LvmConfigSection, key: string, where: string, fail: Fail): string {
  const value = get(section, key, where, fail);
  return typeof value === 'string' ? value : fail(`${where}: '${key}' is not a string`);
}

function countOf(section: LvmConfigSection, key: string, where: string, fail: Fail, min = 0): number {
  const value = get(section, key, where, fail);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    fail(`${where}: '${key}' is not an integer of at least ${min}`);
  }
  return value as number;
}

function arrayOf(section: LvmConfigSection, key: string, where: string, fail: Fail): readonly LvmScalar[] {
  const value = get(section, key, where, fail);
  return Array.isArray(value) ? value : fail(`${where}: '${key}' is not an array`);
}

/** The sub-sections of a section, in text order. */
function subsections(section: LvmConfigSection): Array<[string, LvmConfigSection]> {
  const out: Array<[string, LvmConfigSection]> = [];
  for (const [key, value] of section.entries) if (isSection(value)) out.push([key, value]);
  return out;
}

function parsePv(key: string, section: LvmConfigSection, fail: Fail): LvmPv {
  const where = `PV ${quoteText(key)}`;
  return {
    key,
    uuid: stringOf(section, 'id', where, fail),
    peStartSectors: countOf(section, 'pe_start', where, fail),
    peCount: countOf(section, 'pe_count', where, fail),
  };
}

/** The areas of a striped segment: `stripes` holds (PV or LV name, first extent) per stripe. */
function stripedAreas(section: LvmConfigSection, where: string, extentCount: number, fail: Fail) {
  const stripeCount = countOf(section, 'stripe_count', where, fail, 1);
  const stripes = arrayOf(section, 'stripes', where, fail);
  if (stripes.length !== 2 * stripeCount) fail(`${where}: ${stripeCount} stripes but ${stripes.length / 2} listed`);
  if (extentCount % stripeCount !== 0) fail(`${where}: ${extentCount} extents do not split into ${stripeCount} stripes`);
  const pairs: Array<[string, number]> = [];
  for (let i = 0; i < stripes.length; i += 2) {
    const [name, first] = [stripes[i], stripes[i + 1]];
    if (typeof name !== 'string' || typeof first !== 'number' || !Number.isSafeInteger(first) || first < 0) {
      fail(`${where}: stripe ${i / 2} is not a name and an extent number`);
    }
    pairs.push([name as string, first as number]);
  }
  return { stripeCount, pairs, lengthExtents: extentCount / stripeCount };
}

/** Every (PV, extent) pair and every LV name mentioned anywhere in a segment of another type. */
function referencedAreas(section: LvmConfigSection, pvKeys: ReadonlySet<string>) {
  const pvPairs: Array<[string, number]> = [];
  const lvNames: Array<[string, string]> = [];
  for (const [key, value] of section.entries) {
    if (key === 'type' || isSection(value)) continue;
    const items: readonly LvmScalar[] = Array.isArray(value) ? value : [value as LvmScalar];
    items.forEach((item, i) => {
      if (typeof item !== 'string') return;
      const next = items[i + 1];
      const isExtent = typeof next === 'number' && Number.isSafeInteger(next) && next >= 0;
      if (pvKeys.has(item) && isExtent) pvPairs.push([item, next]);
      else lvNames.push([item, key]);
    });
  }
  return { pvPairs, lvNames };
}

function parseSegment(where: string, section: LvmConfigSection, pvKeys: ReadonlySet<string>, fail: Fail): LvmSegment {
  const startExtent = countOf(section, 'start_extent', where, fail);
  const extentCount = countOf(section, 'extent_count', where, fail, 1);
  const type = stringOf(section, 'type', where, fail);
  if (!SEGMENT_TYPE.test(type)) fail(`${where}: segment type ${quoteText(type)} is not a type name`);
  const base = { startExtent, extentCount, type };
  if (type === 'striped') {
    const { stripeCount, pairs, lengthExtents } = stripedAreas(section, where, extentCount, fail);
    const pvAreas = pairs
      .filter(([name]) => pvKeys.has(name))
      .map(([pvKey, firstPe]) => ({ pvKey, firstPe, extentCount: lengthExtents, exact: true }));
    const lvRefs = pairs.filter(([name]) => !pvKeys.has(name)).map(([name]) => ({ name, key: 'stripes' }));
    return { ...base, stripeCount, pvAreas, lvRefs };
  }
  // pvmove's "mirror" copies whole segments, so each PV leg is extent_count long; for other
  // types a PV area is unexpected and its length a guess, kept only to never free it.
  const { pvPairs, lvNames } = referencedAreas(section, pvKeys);
  const exact = type === 'mirror';
  const pvAreas = pvPairs.map(([pvKey, firstPe]) => ({ pvKey, firstPe, extentCount, exact }));
  return { ...base, stripeCount: 0, pvAreas, lvRefs: lvNames.map(([name, key]) => ({ name, key })) };
}

/** Segments sorted by logical extent; they must tile [0, total) with no gap or overlap. */
function parseSegments(lvName: string, section: LvmConfigSection, pvKeys: ReadonlySet<string>, fail: Fail) {
  const segments = subsections(section)
    .filter(([key]) => /^segment\d+$/.test(key))
    .map(([key, seg]) => parseSegment(`LV ${lvName} ${key}`, seg, pvKeys, fail))
    .sort((a, b) => a.startExtent - b.startExtent);
  let next = 0;
  for (const seg of segments) {
    if (seg.startExtent !== next) {
      fail(`LV ${lvName}: segments leave a gap or overlap at logical extent ${Math.min(next, seg.startExtent)}`);
    }
    next = seg.startExtent + seg.extentCount;
  }
  return segments;
}

function parseLv(name: string, section: LvmConfigSection, pvKeys: ReadonlySet<string>, fail: Fail): LvmLv {
  const status = arrayOf(section, 'status', `LV ${name}`, fail);
  return { name, visible: status.includes('VISIBLE'), writable: status.includes('WRITE'), segments: parseSegments(name, section, pvKeys, fail) };
}

/** The VG section: the only section at the top level of a metadata text. */
function vgSection(root: LvmConfigSection, fail: Fail): [string, LvmConfigSection] {
  const version = root.entries.get('version');
  if (version !== undefined && version !== TEXT_FORMAT_VERSION) {
    fail(`text format version ${String(version)}, expected ${TEXT_FORMAT_VERSION}`);
  }
  const sections = subsections(root);
  if (sections.length !== 1) fail(`${sections.length} top-level sections, expected one volume group`);
  return sections[0]!;
}

/** Decodes the VG of a parsed metadata text; `fail` throws for anything missing or malformed. */
export function parseLvmVg(root: LvmConfigSection, fail: Fail): LvmVg {
  const [rawName, vg] = vgSection(root, fail);
  const name = checkName('VG', rawName, fail);
  const where = `VG ${name}`;
  const pvs = new Map<string, LvmPv>();
  for (const [key, pv] of subsections(sectionOf(vg, 'physical_volumes', where, fail))) {
    pvs.set(key, parsePv(key, pv, fail));
  }
  const pvKeys = new Set(pvs.keys());
  const lvs = new Map<string, LvmLv>();
  const lvSection = vg.entries.get('logical_volumes');
  if (lvSection !== undefined && !isSection(lvSection)) fail(`${where}: 'logical_volumes' is not a section`);
  for (const [key, lv] of lvSection ? subsections(lvSection) : []) {
    lvs.set(key, parseLv(checkName('LV', key, fail), lv, pvKeys, fail));
  }
  return {
    name,
    seqno: countOf(vg, 'seqno', where, fail),
    extentSizeSectors: countOf(vg, 'extent_size', where, fail, 1),
    pvs,
    lvs,
  };
}
