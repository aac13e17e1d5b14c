/** Which LV of a PV may shrink, and where the PV may end (src/shrink/lvm.ts): LVM's extent map decides. */
import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import type { LvmResult } from '../../../src/layout/lvm.js';
import type { Volume } from '../../../src/layout/types.js';
import { decideShrink } from '../../../src/shrink/decide.js';
import { decideLvmShrink } from '../../../src/shrink/lvm.js';

const MiB = 1 << 20;
const EXTENT = 4 * MiB;
const PE_START = MiB;
const PE_COUNT = 100;
const END = PE_START + PE_COUNT * EXTENT;

function lv(name: string, firstPe: number, extents: number, extra: Partial<Volume> = {}): Volume {
  return { name: `/dev/VG/${name}`, offsetBytes: PE_START + firstPe * EXTENT, sizeBytes: extents * EXTENT, kind: 'logical-volume', ...extra };
}

/** A one-PV VG holding `lvs`; every extent no LV holds is free. */
function pv(lvs: Volume[], extra: Partial<LvmResult> = {}): LvmResult {
  const used = ExtentSet.from(lvs.map((v) => ({ start: v.offsetBytes, end: v.offsetBytes + v.sizeBytes })));
  return {
    vgName: 'VG',
    extentSizeBytes: EXTENT,
    volumes: lvs,
    unhandled: [],
    freeOnPv: ExtentSet.of(PE_START, PE_COUNT * EXTENT).subtract(used),
    structures: ExtentSet.from([{ start: 512, end: 1024 }, { start: 4096, end: PE_START }]),
    notes: [],
    pvCount: 1,
    extentArea: { startBytes: PE_START, endBytes: END },
    usedIsComplete: true,
    ...extra,
  };
}

const ext4 = { type: 'ext4' as const };

describe('decideLvmShrink', () => {
  it('a PV partition goes to the LVM decider', () => {
    const part: Volume = { name: '/dev/sda2', offsetBytes: MiB, sizeBytes: 512 * MiB, kind: 'partition', partitionNumber: 2 };
    expect(decideShrink(part, { type: 'lvm-pv' })).toEqual({ action: 'resize-lvm' });
  });

  it('the LV whose extents are last shrinks; the one before it keeps its size with the reason', () => {
    const swap = lv('swap', 0, 8);
    const root = lv('root', 8, 92);
    const d = decideLvmShrink(pv([root, swap]), ext4);
    expect(d).toEqual({
      action: 'shrink',
      extentSizeBytes: EXTENT,
      lastLv: root,
      usedEndBytes: END,
      rows: [{ volume: swap, newSizeBytes: swap.sizeBytes, action: 'kept', reason: 'not the last LV of its PV: kept its size' }],
    });
  });

  it('free extents after the last LV are cut even when that LV cannot shrink', () => {
    const data = lv('data', 0, 60);
    const d = decideLvmShrink(pv([data]), { type: 'xfs' });
    expect(d).toMatchObject({ action: 'shrink', usedEndBytes: PE_START + 60 * EXTENT, rows: [{ volume: data, action: 'kept', reason: expect.stringMatching(/xfs/) }] });
    expect(d).not.toHaveProperty('lastLv');
  });

  it('an ext4 LV with free extents after it shrinks too; the used end is where it ends', () => {
    const root = lv('root', 0, 60);
    expect(decideLvmShrink(pv([root]), ext4)).toMatchObject({ action: 'shrink', lastLv: root, usedEndBytes: PE_START + 60 * EXTENT });
  });

  it('an LV that is not one linear run after the last linear LV blocks it; the free tail still goes', () => {
    const root = lv('root', 0, 50);
    const lvm = pv([root], { freeOnPv: ExtentSet.of(PE_START + 70 * EXTENT, 30 * EXTENT), unhandled: [{ name: 'thin', reason: 'thin pool' }] });
    const d = decideLvmShrink(lvm, ext4);
    expect(d).toMatchObject({ action: 'shrink', usedEndBytes: PE_START + 70 * EXTENT, rows: [{ volume: root, action: 'kept', reason: expect.stringMatching(/not the last LV/) }] });
    expect(d).not.toHaveProperty('lastLv');
  });

  it('keeps the PV when nothing at its end can go, naming why', () => {
    const full = lv('data', 0, PE_COUNT);
    expect(decideLvmShrink(pv([full]), { type: 'xfs' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/neither its last LV/) });
    expect(decideLvmShrink(pv([full]), { type: 'ext4', dirty: true })).toMatchObject({ action: 'keep', rows: [{ reason: expect.stringMatching(/journal/) }] });
    expect(decideLvmShrink(pv([lv('ro', 0, PE_COUNT, { readOnly: true })]), ext4)).toMatchObject({ action: 'keep', rows: [{ reason: expect.stringMatching(/read-only/) }] });
  });

  it('keeps a PV of a multi-PV VG, one with unknown segment types, one with a metadata copy at its end, one without a VG', () => {
    const root = lv('root', 0, 50);
    expect(decideLvmShrink(pv([root], { pvCount: 2 }), ext4)).toMatchObject({ action: 'keep', reason: 'its volume group VG spans 2 PVs: kept its size', rows: [{ volume: root, action: 'kept' }] });
    expect(decideLvmShrink(pv([root], { usedIsComplete: false }), ext4)).toMatchObject({ action: 'keep', reason: expect.stringMatching(/segment types/) });
    const mda2 = ExtentSet.from([{ start: 512, end: 1024 }, { start: END, end: END + MiB }]);
    expect(decideLvmShrink(pv([root], { structures: mda2 }), ext4)).toMatchObject({ action: 'keep', reason: expect.stringMatching(/metadata copy/) });
    expect(decideLvmShrink(pv([], { vgName: '' }), undefined)).toMatchObject({ action: 'keep', reason: expect.stringMatching(/without its volume group/) });
    expect(decideLvmShrink(pv([]), undefined)).toMatchObject({ action: 'keep', reason: expect.stringMatching(/no extent/) });
  });
});
