/**
 * LVM2 on one physical volume → its logical volumes as byte ranges of the PV, and the extents
 * no LV uses. The chain: PV label (lvm-pv.ts) → metadata areas (lvm-mda.ts) → committed
 * metadata text → config tree (lvm-config.ts) → VG (lvm-vg.ts) → this PV's map (lvm-map.ts).
 * Everything read from the PV is checked before use; damage throws BAD_LAYOUT naming the PV and
 * the byte where the bad structure is.
 */
import type { BlockReader } from '../disk/types.js';
import { ExtentSet } from '../disk/extent-set.js';
import { isSparsifyError } from '../errors.js';
import { LvmConfigError, parseLvmConfig } from './lvm-config.js';
import { mapLvmPv } from './lvm-map.js';
import {
  MDA_HEADER_BYTES,
  lvmLayoutError,
  parseMdaHeader,
  readMetadataText,
  type MetadataText,
} from './lvm-mda.js';
import { LVM_LABEL_SECTOR_BYTES, lvmStructureRanges, probeLvmPv, type LvmPvLabel, type PvArea } from './lvm-pv.js';
import { parseLvmVg, type Fail, type LvmPv, type LvmVg } from './lvm-vg.js';
import type { Volume } from './types.js';

/** LVM counts extent_size and pe_start in 512-byte sectors whatever the device's sector size. */
const LVM_SECTOR_BYTES = 512;
/** The label may sit in any of the first four sectors; extents never start before them. */
const LABEL_AREA_BYTES = 4 * LVM_LABEL_SECTOR_BYTES;

/** What the LVM2 metadata of one PV says. Byte offsets are relative to the PV. */
export interface LvmResult {
  /** The VG's name; '' when this PV holds no VG metadata (an orphan PV, or metadata kept elsewhere). */
  readonly vgName: string;
  readonly extentSizeBytes: number;
  /** Linear LVs lying wholly and contiguously on this PV, in PV order: kind 'logical-volume', /dev/VG/LV. */
  readonly volumes: Volume[];
  /**
   * LVs that are not one run of this PV (thin, raid, mirror, snapshot origin or store, striped,
   * on several PVs, non-contiguous, unknown types) and why. Reading each PV of a multi-PV VG
   * reports an LV built on several of them once per PV: dedupe by name.
   */
  readonly unhandled: { name: string; reason: string }[];
  /** Extents of this PV that no segment of any LV uses, as PV-relative bytes. */
  readonly freeOnPv: ExtentSet;
  /** The label sector and the metadata areas, as PV-relative bytes (see lvmStructureRanges). */
  readonly structures: ExtentSet;
  readonly notes: string[];
  /** How many PVs the VG has (0 with no VG metadata); --shrink resizes only a VG wholly on this PV. */
  readonly pvCount: number;
  /** Where this PV's extents lie, as PV-relative bytes: pe_start to pe_start + pe_count × extent size. */
  readonly extentArea: { readonly startBytes: number; readonly endBytes: number };
  /** Every extent in use is known (no segment type this reader does not model): freeOnPv is exact. */
  readonly usedIsComplete: boolean;
}

interface FoundMetadata {
  readonly vg: LvmVg;
  readonly text: MetadataText;
}

/** Reads the LVM2 metadata of the PV `pvReader` covers; `pvName` (/dev/sda2) names it in messages. */
export async function readLvm(pvReader: BlockReader, pvName: string): Promise<LvmResult> {
  const label = await probeLvmPv(pvReader);
  if (!label) throw lvmLayoutError(pvName, 0, 'no LVM2 label in the first four sectors');
  const notes: string[] = [];
  const found = await readNewestMetadata(pvReader, label, pvName, notes);
  if (!found) {
    notes.push(
      `${pvName} holds no LVM volume group metadata (a PV in no VG, or one whose metadata areas are ` +
        'absent or ignored, its VG being described on another PV): nothing on it is treated as free',
    );
    const structures = lvmStructureRanges(label, pvReader.sizeBytes);
    return {
      vgName: '', extentSizeBytes: 0, volumes: [], unhandled: [], freeOnPv: ExtentSet.empty, structures, notes,
      pvCount: 0, extentArea: { startBytes: 0, endBytes: 0 }, usedIsComplete: false,
    };
  }
  return resultFor(found, label, pvReader.sizeBytes, pvName, notes);
}

/** Reads every metadata area the label lists and keeps the newest VG (highest seqno). */
async function readNewestMetadata(
  pvReader: BlockReader,
  label: LvmPvLabel,
  pvName: string,
  notes: string[],
): Promise<FoundMetadata | undefined> {
  const found: FoundMetadata[] = [];
  const errors: unknown[] = [];
  for (const area of label.metadataAreas) {
    try {
      const text = await readAreaText(pvReader, area, pvName);
      if (text) found.push({ text, vg: decodeVg(text, pvName) });
    } catch (err) {
      if (!isSparsifyError(err, 'BAD_LAYOUT')) throw err;
      errors.push(err);
    }
  }
  if (found.length === 0) {
    if (errors.length > 0) throw errors[0];
    return undefined;
  }
  for (const err of errors) notes.push(`${(err as Error).message}; the other metadata copy is used`);
  found.sort((a, b) => b.vg.seqno - a.vg.seqno);
  if (found[0]!.vg.seqno !== found[found.length - 1]!.vg.seqno) {
    notes.push(`the metadata areas of ${pvName} disagree; the newest (seqno ${found[0]!.vg.seqno}) is used`);
  }
  return found[0];
}

async function readAreaText(pvReader: BlockReader, area: PvArea, pvName: string): Promise<MetadataText | undefined> {
  const end = area.offsetBytes + area.sizeBytes;
  if (area.offsetBytes < LABEL_AREA_BYTES || area.sizeBytes <= MDA_HEADER_BYTES || end > pvReader.sizeBytes) {
    throw lvmLayoutError(pvName, area.offsetBytes, `metadata area of ${area.sizeBytes} bytes is not inside the PV`);
  }
  const header = parseMdaHeader(await pvReader.read(area.offsetBytes, MDA_HEADER_BYTES), area, pvName);
  return readMetadataText(pvReader, header, pvName);
}

function decodeVg(text: MetadataText, pvName: string): LvmVg {
  const fail: Fail = (what) => {
    throw lvmLayoutError(pvName, text.pvOffsetBytes, what);
  };
  try {
    return parseLvmVg(parseLvmConfig(text.text), fail);
  } catch (err) {
    if (!(err instanceof LvmConfigError)) throw err;
    throw lvmLayoutError(pvName, text.pvOffsetBytes, `metadata text ${err.message}`, err);
  }
}

/** This PV's entry in the VG, found by the UUID of its label. */
function thisPv(vg: LvmVg, label: LvmPvLabel, fail: Fail): LvmPv {
  for (const pv of vg.pvs.values()) if (pv.uuid === label.pvUuid) return pv;
  return fail(`VG ${vg.name} does not list this PV (${label.pvUuid})`);
}

/** The extents must lie inside the PV and clear of the label and every metadata area. */
function checkExtentRegion(
  pv: LvmPv,
  extentBytes: number,
  label: LvmPvLabel,
  pvSizeBytes: number,
  fail: Fail,
): void {
  const start = pv.peStartSectors * LVM_SECTOR_BYTES;
  const end = start + pv.peCount * extentBytes;
  if (end > pvSizeBytes) fail(`${pv.peCount} extents from byte ${start} end past the ${pvSizeBytes}-byte PV`);
  if (pv.peCount === 0) return;
  if (start < LABEL_AREA_BYTES) fail(`pe_start ${pv.peStartSectors} overlaps the PV label`);
  for (const mda of label.metadataAreas) {
    if (start < mda.offsetBytes + mda.sizeBytes && mda.offsetBytes < end) {
      fail(`the extents (bytes ${start}–${end}) overlap the metadata area at byte ${mda.offsetBytes}`);
    }
  }
}

function resultFor(
  found: FoundMetadata,
  label: LvmPvLabel,
  pvSizeBytes: number,
  pvName: string,
  notes: string[],
): LvmResult {
  const { vg, text } = found;
  const fail: Fail = (what) => {
    throw lvmLayoutError(pvName, text.pvOffsetBytes, what);
  };
  const pv = thisPv(vg, label, fail);
  const extentSizeBytes = vg.extentSizeSectors * LVM_SECTOR_BYTES;
  checkExtentRegion(pv, extentSizeBytes, label, pvSizeBytes, fail);
  const peStartBytes = pv.peStartSectors * LVM_SECTOR_BYTES;
  const dataStart = label.dataAreas[0]?.offsetBytes;
  if (dataStart !== undefined && dataStart !== peStartBytes) {
    notes.push(`the PV label puts data at byte ${dataStart}, the metadata at byte ${peStartBytes}; the metadata is used`);
  }
  const map = mapLvmPv(vg, pv, fail);
  const toBytes = (pe: number): number => peStartBytes + pe * extentSizeBytes;
  const volumes: Volume[] = map.linear
    .map((lv) => ({
      name: `/dev/${vg.name}/${lv.name}`,
      offsetBytes: toBytes(lv.firstPe),
      sizeBytes: lv.extentCount * extentSizeBytes,
      kind: 'logical-volume' as const,
      ...(lv.readOnly ? { readOnly: true } : {}),
    }))
    .sort((a, b) => a.offsetBytes - b.offsetBytes);
  const used = ExtentSet.from(map.usedExtents.map((r) => ({ start: toBytes(r.start), end: toBytes(r.end) })));
  const allExtents = ExtentSet.of(peStartBytes, pv.peCount * extentSizeBytes);
  return {
    vgName: vg.name,
    extentSizeBytes,
    volumes,
    unhandled: [...map.unhandled],
    freeOnPv: map.usedIsComplete ? allExtents.subtract(used) : ExtentSet.empty,
    structures: lvmStructureRanges(label, pvSizeBytes),
    notes: [...notes, ...map.notes],
    pvCount: vg.pvs.size,
    extentArea: { startBytes: peStartBytes, endBytes: peStartBytes + pv.peCount * extentSizeBytes },
    usedIsComplete: map.usedIsComplete,
  };
}
