import { describe, expect, it } from 'vitest';
import { findLvmPvLabel, lvmLabelCrc, parseLvmPvLabel, probeLvmPv } from '../../../src/layout/lvm-pv.js';
import { flip, memReader, view } from './fixtures.js';

/** Sector 1 of an 8 MiB loop device after `pvcreate -u 3Jd0Xv-kLmB-aS9u-2hTe-3qWz-RtY7-Kp1Nxc` (lvm2 2.03). */
const PVCREATE_LABEL_HEX =
  '4c4142454c4f4e4501000000000000001290a43f200000004c564d3220303031334a643058766b4c6d4261533975326854653371577a5274' +
  '59374b70314e786300008000000000000000100000000000000000000000000000000000000000000000000000000000001000000000' +
  '000000f00f00000000000000000000000000000000000000000002';

function pvcreateSector(): Uint8Array {
  const hex = PVCREATE_LABEL_HEX.padEnd(1024, '0');
  return Uint8Array.from({ length: 512 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16));
}

describe('LVM2 PV label', () => {
  it('decodes the label pvcreate wrote, checksum included', () => {
    const sector = pvcreateSector();
    expect(lvmLabelCrc(sector)).toBe(view(sector).getUint32(16, true));
    expect(parseLvmPvLabel(sector, 1)).toEqual({
      labelSector: 1,
      pvUuid: '3Jd0Xv-kLmB-aS9u-2hTe-3qWz-RtY7-Kp1Nxc',
      deviceSizeBytes: 8 * 1024 * 1024,
      dataAreas: [{ offsetBytes: 1048576, sizeBytes: 0 }],
      metadataAreas: [{ offsetBytes: 4096, sizeBytes: 1044480 }],
    });
  });

  it('finds the label in sector 1 of a volume', async () => {
    const volume = new Uint8Array(64 * 1024);
    volume.set(pvcreateSector(), 512);
    expect((await probeLvmPv(memReader(volume)))?.pvUuid).toBe('3Jd0Xv-kLmB-aS9u-2hTe-3qWz-RtY7-Kp1Nxc');
  });

  it('rejects a label whose checksum does not match', () => {
    const sector = pvcreateSector();
    flip(sector, 40, 1);
    expect(parseLvmPvLabel(sector, 1)).toBeUndefined();
  });

  it('rejects a label that records another sector than its own', () => {
    const head = new Uint8Array(2048);
    head.set(pvcreateSector(), 1024);
    expect(findLvmPvLabel(head)).toBeUndefined();
  });

  it('rejects a pv_header offset that leaves the sector', () => {
    const sector = pvcreateSector();
    view(sector).setUint32(20, 500, true);
    view(sector).setUint32(16, lvmLabelCrc(sector), true);
    expect(parseLvmPvLabel(sector, 1)).toBeUndefined();
  });

  it('rejects an area list that never ends', () => {
    const sector = pvcreateSector();
    sector.fill(0xff, 0x48, 512);
    view(sector).setUint32(16, lvmLabelCrc(sector), true);
    expect(parseLvmPvLabel(sector, 1)).toBeUndefined();
  });

  it('finds nothing on volumes smaller than a sector', async () => {
    expect(await probeLvmPv(memReader(new Uint8Array(100)))).toBeUndefined();
    expect(await probeLvmPv(memReader(new Uint8Array(0)))).toBeUndefined();
  });
});
