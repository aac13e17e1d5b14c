/**
 * Which filesystems the mount engine can mount, and how: the one place that decides it (the
 * planner asks through the engine's `accepts`).
 */
import type { ProbeResult } from '../../fs/types.js';

/** How to mount one filesystem type, or why it cannot be. */
export type MountPlan =
  | { readonly kind: 'mount'; readonly fsType: string; readonly options: readonly string[] }
  | { readonly kind: 'unmountable'; readonly reason: string };

/** Guest files must never become devices, setuid programs or executables on the host. */
const SAFE_OPTIONS = ['nodev', 'nosuid', 'noexec'] as const;

/** The mount for a probed filesystem. */
export function mountPlanFor(fs: ProbeResult): MountPlan {
  switch (fs.type) {
    case 'ext2':
    case 'ext3':
    case 'ext4':
      // The ext4 driver mounts ext2/ext3 without changing their features, and implements FITRIM for all three.
      return { kind: 'mount', fsType: 'ext4', options: SAFE_OPTIONS };
    case 'xfs':
      // nouuid: the same filesystem may be mounted elsewhere on the host (the VM's own image, a clone).
      return { kind: 'mount', fsType: 'xfs', options: [...SAFE_OPTIONS, 'nouuid'] };
    case 'btrfs':
      // The top-level subvolume: one fstrim covers the whole filesystem, snapshots included.
      return { kind: 'mount', fsType: 'btrfs', options: [...SAFE_OPTIONS, 'subvolid=5'] };
    case 'ntfs':
      return { kind: 'mount', fsType: 'ntfs-3g', options: SAFE_OPTIONS };
    case 'vfat':
      return { kind: 'mount', fsType: 'vfat', options: SAFE_OPTIONS };
    case 'luks':
      return { kind: 'unmountable', reason: 'encrypted (LUKS)' };
    case 'lvm-pv':
      return { kind: 'unmountable', reason: 'LVM physical volume without volume group metadata' };
    case 'unknown':
      return { kind: 'unmountable', reason: 'no filesystem recognised' };
    default:
      return { kind: 'unmountable', reason: `${fs.type}: not handled` };
  }
}
