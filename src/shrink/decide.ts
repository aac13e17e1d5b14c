/**
 * Whether and how each volume shrinks: one decider per filesystem kind, in one table, so that a
 * new kind (ntfs with ntfsresize, btrfs, the last LV of a PV) is one more row and nothing else.
 * A volume that keeps its size still moves down when something before it shrank.
 */
import type { FsType, ProbeResult } from '../fs/types.js';
import type { Volume } from '../layout/types.js';

/** What `--shrink` does with one volume. */
export type ShrinkDecision =
  /** e2fsck -f, then resize2fs to the minimum plus the margin (src/shrink/ext.ts). */
  | { readonly action: 'resize-ext' }
  /** A swap area holds nothing to keep across a shutdown: it is made again, same UUID and label, at its new place. */
  | { readonly action: 'remake-swap' }
  /** An LVM PV: its last LV's ext filesystem and the LV shrink, then the PV is cut after its last extent in use (src/shrink/lvm.ts). */
  | { readonly action: 'resize-lvm' }
  /** ntfsresize to its minimum (ntfsresize --info) plus the margin (src/shrink/ntfs.ts). */
  | { readonly action: 'resize-ntfs' }
  /** btrfs check, then btrfs filesystem resize to its minimum (min-dev-size) plus the margin (src/shrink/btrfs.ts). */
  | { readonly action: 'resize-btrfs' }
  | { readonly action: 'keep'; readonly reason: string };

type Decider = (fs: ProbeResult, volume: Volume) => ShrinkDecision;

const keep = (reason: string): ShrinkDecision => ({ action: 'keep', reason });

const ext: Decider = (fs) => (fs.dirty ? keep('its journal needs recovery: kept its size (boot the guest or fsck it first)') : { action: 'resize-ext' });

/** The table: every filesystem kind the probe knows has its row. */
const DECIDERS: Record<FsType, Decider> = {
  ext2: ext,
  ext3: ext,
  ext4: ext,
  swap: (fs) => (fs.hibernated ? keep('it holds a hibernation image: kept as it is') : { action: 'remake-swap' }),
  xfs: () => keep('xfs cannot shrink: kept its size'),
  ntfs: (fs) => (fs.dirty ? keep('it is marked for a check (chkdsk): kept its size (boot Windows or run chkdsk first)') : { action: 'resize-ntfs' }),
  btrfs: (fs) =>
    fs.devices ? keep(`a btrfs over ${fs.devices} devices: its other devices are not on this disk, kept its size`) : { action: 'resize-btrfs' },
  'lvm-pv': () => ({ action: 'resize-lvm' }),
  luks: () => keep('encrypted: its contents cannot be resized without the key'),
  vfat: () => keep('vfat is not shrunk (an EFI system partition is small already)'),
  f2fs: () => keep('f2fs cannot shrink: kept its size'),
  jfs: () => keep('jfs cannot shrink: kept its size'),
  hfsplus: () => keep('no shrinking for hfsplus: kept its size'),
  exfat: () => keep('no shrinking for exfat: kept its size'),
  reiserfs: () => keep('no shrinking for reiserfs: kept its size'),
  nilfs2: () => keep('no shrinking for nilfs2: kept its size'),
  unknown: () => keep('unknown contents are never shrunk: kept its size'),
};

/** The decision for one volume. */
export function decideShrink(volume: Volume, fs: ProbeResult): ShrinkDecision {
  if (volume.kind !== 'partition') return keep('only partitions are shrunk for now');
  return DECIDERS[fs.type](fs, volume);
}
