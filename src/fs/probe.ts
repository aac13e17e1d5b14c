/**
 * Identifies what a volume holds from its superblock magic, reading a few small regions: the
 * first 8 KiB, the btrfs superblock at 64 KiB and, when needed, one more sector per candidate.
 * A volume too small for a structure simply does not match it; nothing here throws for that.
 * Then the chosen driver's `readState`, if it has one, reads the typed state (dirty,
 * hibernated) from a few metadata blocks; the planner decides from those fields.
 */
import type { BlockReader } from '../disk/types.js';
import { isSparsifyError } from '../errors.js';
import { btrfsDriver } from './btrfs/index.js';
import type { FsDriver } from './driver.js';
import { extDriver } from './ext/index.js';
import { fatDriver } from './fat/index.js';
import { foreignDriver } from './foreign/index.js';
import { luksDriver } from './luks/index.js';
import { lvmPvDriver } from './lvm-pv/index.js';
import { ntfsDriver } from './ntfs/index.js';
import type { Detected } from './probe-common.js';
import { swapDriver } from './swap/index.js';
import type { FsState, FsType, ProbeResult } from './types.js';
import { xfsDriver } from './xfs/index.js';

/** How much of the volume's start one read fetches: boot sectors, ext, LVM label, 4 KiB swap page. */
export const PROBE_HEAD_BYTES = 8192;

/**
 * Every filesystem and volume format the probe knows, once. Adding one is a folder under
 * src/fs exporting its driver, and a line here.
 *
 * Precedence when several signatures match, first wins. A later mkfs leaves some of an earlier
 * one's bytes alone: mke2fs and mkswap never write the first 1 KiB, where FAT, NTFS and XFS
 * keep their boot sector or superblock, while those three always overwrite 1–2 KiB; mkfs.btrfs
 * zeroes the first megabytes, so anything else found there is newer. LUKS and LVM labels carry
 * long magics (and a CRC for LVM) and come first, as in libblkid. The filesystems known by
 * signature only come last: one sparsify can read wins over a stale foreign magic.
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
  foreignDriver,
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

/**
 * Probes a volume by its superblocks, then reads the chosen driver's typed state (dirty,
 * hibernated); 'unknown' when nothing matches or the volume is too small.
 */
export async function probeVolume(reader: BlockReader): Promise<ProbeResult> {
  const head = await reader.read(0, Math.min(reader.sizeBytes, PROBE_HEAD_BYTES));
  const found: Detected[] = [];
  for (const driver of FS_DRIVERS) {
    const d = await driver.detect(reader, head);
    if (d) found.push(d);
  }
  if (found.length === 0) return { type: 'unknown' };
  const result = found.length === 1 ? found[0]!.result : await resolve(found);
  return { ...result, ...(await readState(reader, result.type)) };
}

/** The state the driver of `type` reads beyond its superblock; none when it cannot decode it. */
async function readState(reader: BlockReader, type: FsType): Promise<FsState> {
  const read = fsDriverFor(type)?.readState;
  if (!read) return {};
  try {
    return await read(reader);
  } catch (err) {
    if (isSparsifyError(err, 'BAD_IMAGE')) return {};
    throw err;
  }
}

