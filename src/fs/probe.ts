/**
 * Identifies what a volume holds from its superblock magic, reading a few small regions: the
 * first 8 KiB, the btrfs superblock at 64 KiB and, when needed, one more sector per candidate.
 * A volume too small for a structure simply does not match it; nothing here throws for that.
 */
import type { BlockReader } from '../disk/types.js';
import { LVM_LABEL_SECTOR_BYTES, findLvmPvLabel } from '../layout/lvm-pv.js';
import type { FsDriver } from './driver.js';
import { extDriver } from './ext/index.js';
import { fatDriver } from './fat/index.js';
import { ntfsDriver } from './ntfs/index.js';
import { alwaysLive, type Detected } from './probe-common.js';
import { detectBtrfs, detectLuks, detectSwap } from './probe-linux.js';
import { readSwapFreeMap } from './swap.js';
import type { FsType, ProbeResult } from './types.js';
import { xfsDriver } from './xfs/index.js';

/** How much of the volume's start one read fetches: boot sectors, ext, LVM label, 4 KiB swap page. */
export const PROBE_HEAD_BYTES = 8192;

/** An LVM2 PV by its label in sectors 0–3 (the CRC makes it as sure as a signature gets). */
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

// The formats without a folder of their own yet: detectors in probe-linux.ts, swap's map in swap.ts.
const luksDriver: FsDriver = { types: ['luks'], detect: detectLuks };
const lvmPvDriver: FsDriver = { types: ['lvm-pv'], detect: detectLvmPv };
const swapDriver: FsDriver = { types: ['swap'], detect: detectSwap, readFreeMap: readSwapFreeMap };
const btrfsDriver: FsDriver = { types: ['btrfs'], detect: detectBtrfs };

/**
 * Every filesystem and volume format the probe knows, once. Adding one is a folder under
 * src/fs exporting its driver, and a line here.
 *
 * Precedence when several signatures match, first wins. A later mkfs leaves some of an earlier
 * one's bytes alone: mke2fs and mkswap never write the first 1 KiB, where FAT, NTFS and XFS
 * keep their boot sector or superblock, while those three always overwrite 1–2 KiB; mkfs.btrfs
 * zeroes the first megabytes, so anything else found there is newer. LUKS and LVM labels carry
 * long magics (and a CRC for LVM) and come first, as in libblkid.
 */
export const FS_DRIVERS: readonly FsDriver[] = [
  luksDriver,
  lvmPvDriver,
  swapDriver,
  extDriver,
  xfsDriver,
  ntfsDriver,
  fatDriver,
  btrfsDriver,
];

/** The driver whose detector reports `type`; undefined for 'unknown'. */
export function fsDriverFor(type: FsType): FsDriver | undefined {
  return FS_DRIVERS.find((d) => d.types.includes(type));
}

function describe(d: Detected): string {
  return `${d.result.detail ?? d.result.type} signature at byte ${d.magicOffsetBytes}`;
}

function withNote(chosen: Detected, others: readonly Detected[], why: string): ProbeResult {
  const note = `also found ${others.map(describe).join(', ')}; ${why}`;
  return { ...chosen.result, detail: chosen.result.detail ? `${chosen.result.detail}; ${note}` : note };
}

/**
 * Picks one of several matches the way libblkid would refuse to ("ambivalent result"): the
 * matches whose own structures look live win over those that do not; among equals the
 * precedence of FS_DRIVERS decides. The detail names what was set aside.
 */
async function resolve(found: readonly Detected[]): Promise<ProbeResult> {
  const live: Detected[] = [];
  for (const d of found) if (await d.confirm()) live.push(d);
  const pool = live.length > 0 ? live : found;
  const [chosen] = pool;
  const others = found.filter((d) => d !== chosen);
  if (!chosen) return { type: 'unknown' };
  const why =
    pool.length === 1 && live.length === 1
      ? `only the ${chosen.result.type} structures are consistent, the others are stale`
      : `chose ${chosen.result.type} by precedence (blkid would call this ambivalent; check with wipefs)`;
  return withNote(chosen, others, why);
}

/** Probes a volume by its superblocks; 'unknown' when nothing matches or the volume is too small. */
export async function probeVolume(reader: BlockReader): Promise<ProbeResult> {
  const head = await reader.read(0, Math.min(reader.sizeBytes, PROBE_HEAD_BYTES));
  const found: Detected[] = [];
  for (const driver of FS_DRIVERS) {
    const d = await driver.detect(reader, head);
    if (d) found.push(d);
  }
  if (found.length === 0) return { type: 'unknown' };
  if (found.length === 1) return found[0]!.result;
  return resolve(found);
}
