/**
 * An LVM2 physical volume, by its label in sectors 0–3 (the CRC makes it as sure as a signature
 * gets). The label and metadata decoders live in src/layout/, which expands PVs into logical
 * volumes; this driver only names the PV for the probe.
 */
import type { BlockReader } from '../../disk/types.js';
import { LVM_LABEL_SECTOR_BYTES, findLvmPvLabel } from '../../layout/lvm-pv.js';
import type { FsDriver } from '../driver.js';
import { alwaysLive, type Detected } from '../probe-common.js';

function detectLvmPv(_reader: BlockReader, head: Uint8Array): Promise<Detected | undefined> {
  const label = findLvmPvLabel(head);
  if (!label) return Promise.resolve(undefined);
  const mda = label.metadataAreas[0];
  return Promise.resolve({
    result: {
      type: 'lvm-pv',
      uuid: label.pvUuid,
      detail: mda ? `LVM2 PV, metadata area at byte ${mda.offsetBytes}` : 'LVM2 PV without a metadata area',
    },
    magicOffsetBytes: label.labelSector * LVM_LABEL_SECTOR_BYTES,
    confirm: alwaysLive,
  });
}

/** LVM2 PV: the label in sectors 0–3; its free extents come from the VG metadata, not a driver. */
export const lvmPvDriver: FsDriver = { types: ['lvm-pv'], detect: detectLvmPv };
