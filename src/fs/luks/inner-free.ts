/**
 * Free space inside an opened LUKS volume: the decrypted view is probed like any volume (a
 * filesystem, or an LVM PV whose linear LVs are probed in turn), each free map is read through
 * the view, and the free plaintext is mapped back to whole ciphertext sectors of the LUKS
 * volume. Only the sectors those readers ask for are ever decrypted.
 */
import { ExtentSet } from '../../disk/extent-set.js';
import { sliceReader } from '../../disk/types.js';
import { diskFreeRanges, readVolumeFreeMap } from '../../engines/map/free-map.js';
import { isSparsifyError } from '../../errors.js';
import { readLvm } from '../../layout/lvm.js';
import type { Volume } from '../../layout/types.js';
import { hibernationReason, untrustedMapReason } from '../../plan/types.js';
import { probeVolume } from '../probe.js';
import type { FreeMap, ProbeResult } from '../types.js';
import type { DecryptedView } from './decrypted-view.js';

/** One volume found inside: the plaintext filesystem itself, or an LV of the PV inside. */
export interface InnerVolume {
  /** The opened volume's name for a filesystem directly inside, /dev/VG/LV for an LV. */
  readonly volume: Volume;
  readonly fs: ProbeResult;
  /** Undefined when no reader knows the type (swap is one: it is handled by the planner elsewhere). */
  readonly freeMap: FreeMap | undefined;
}

/** What was found inside, and the ciphertext that holds only free plaintext. */
export interface EncryptedFreeSpace {
  readonly inner: readonly InnerVolume[];
  /** Whole encryption sectors, as byte ranges of the LUKS volume (never inside its header). */
  readonly cipherFree: ExtentSet;
  /** The volume group when the plaintext is an LVM PV: its free extents are part of cipherFree. */
  readonly vgName?: string;
  readonly notes: readonly string[];
}

/**
 * The free map of one volume inside (invariant 4): a dirty or hibernated filesystem's on-disk
 * map is not the truth, so it is refused with the reason and its blocks are kept as they are.
 */
async function innerFreeMap(view: DecryptedView, volume: Volume, fs: ProbeResult): Promise<FreeMap | undefined> {
  if (fs.hibernated) return { trusted: false, reason: hibernationReason(fs) };
  if (fs.dirty) return { trusted: false, reason: untrustedMapReason({ volume, fs })! };
  return readVolumeFreeMap(view, volume, fs);
}

/** Why an inner volume's free blocks are kept: "NAME: REASON: copied as it is", or undefined. */
function keptNote(i: InnerVolume): string | undefined {
  return i.freeMap?.trusted === false ? `${i.volume.name}: ${i.freeMap.reason}: its blocks are copied as they are` : undefined;
}

/** Maps plaintext free ranges to whole ciphertext sectors of the LUKS volume. */
function toCipher(view: DecryptedView, plainFree: ExtentSet): ExtentSet {
  return ExtentSet.from(
    plainFree.ranges
      .map((r) => view.cipherRangeOf(r.start, r.end - r.start))
      .filter((r) => r !== undefined)
      .map((r) => ({ start: r.offsetBytes, end: r.offsetBytes + r.lengthBytes })),
  );
}

/** Reads the free space inside the opened LUKS volume `volumeName` through its decrypted view. */
export async function readEncryptedFreeSpace(view: DecryptedView, volumeName: string): Promise<EncryptedFreeSpace> {
  const whole: Volume = { name: volumeName, offsetBytes: 0, sizeBytes: view.sizeBytes, kind: 'whole-disk' };
  const fs = await probeVolume(view);
  if (fs.type !== 'lvm-pv') {
    const freeMap = await innerFreeMap(view, whole, fs);
    const plainFree = freeMap ? diskFreeRanges(whole, freeMap) : ExtentSet.empty;
    const inner = [{ volume: whole, fs, freeMap }];
    return { inner, cipherFree: toCipher(view, plainFree), notes: inner.map(keptNote).filter((n) => n !== undefined) };
  }
  let lvm;
  try {
    lvm = await readLvm(view, volumeName);
  } catch (err) {
    if (!isSparsifyError(err, 'BAD_LAYOUT')) throw err;
    return { inner: [{ volume: whole, fs, freeMap: undefined }], cipherFree: ExtentSet.empty, notes: [err.message] };
  }
  const notes = [...lvm.notes, ...lvm.unhandled.map((lv) => `/dev/${lvm.vgName}/${lv.name}: ${lv.reason}: left as it is`)];
  const inner: InnerVolume[] = [];
  let plainFree = lvm.freeOnPv;
  for (const lv of lvm.volumes) {
    const lvFs = await probeVolume(sliceReader(view, lv.offsetBytes, lv.sizeBytes));
    const freeMap = await innerFreeMap(view, lv, lvFs);
    inner.push({ volume: lv, fs: lvFs, freeMap });
    if (freeMap) plainFree = plainFree.union(diskFreeRanges(lv, freeMap));
  }
  // Invariant 7: LVM's label and metadata areas are never free, whatever a map says.
  notes.push(...inner.map(keptNote).filter((n) => n !== undefined));
  return { inner, cipherFree: toCipher(view, plainFree.subtract(lvm.structures)), vgName: lvm.vgName, notes };
}
