import type { FsType, ProbeResult } from '../fs/types.js';
import type { Volume } from '../layout/types.js';

/** What will be done to one volume, and why. */
export type Action =
  /** Left exactly as it is (copied as is in copy mode, untouched in place). */
  | 'keep'
  /** Made wholly zero (--zero). */
  | 'zero'
  /** Swap: the first 4096 bytes (label, UUID) kept, the rest zeroed. */
  | 'swap'
  /** Mounted; free space trimmed (or zero-filled) by the kernel filesystem. */
  | 'mount';

/** A volume, what probing found, and the planned action with its reason. */
export interface VolumePlan {
  readonly volume: Volume;
  readonly fs: ProbeResult;
  readonly action: Action;
  readonly reason: string;
  /** The volume is copied as is for a reason the user did not choose: the report warns. */
  readonly warn: boolean;
}

/** What the planner needs to know beyond the volumes. */
export interface PlanInput {
  readonly ignore: readonly string[];
  readonly zero: readonly string[];
  /** No filesystem pass at all (--no-zero). */
  readonly noZero: boolean;
  /** Whether the mount engine can run here (root). */
  readonly canMount: boolean;
}

const MOUNTABLE: ReadonlySet<FsType> = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'ntfs', 'vfat']);

/** Decides, for each probed volume, the action and the reason the report will show. */
export function planVolumes(volumes: ReadonlyArray<{ volume: Volume; fs: ProbeResult }>, input: PlanInput): VolumePlan[] {
  return volumes.map(({ volume, fs }) => {
    const { action, reason } = decide(volume, fs, input);
    const chosen = input.ignore.includes(volume.name) || input.noZero;
    return { volume, fs, action, reason, warn: action === 'keep' && !chosen };
  });
}

function decide(volume: Volume, fs: ProbeResult, input: PlanInput): { action: Action; reason: string } {
  if (input.ignore.includes(volume.name)) return { action: 'keep', reason: 'ignored (--ignore)' };
  if (input.zero.includes(volume.name)) return { action: 'zero', reason: 'zeroed as asked (--zero)' };
  if (input.noZero) return { action: 'keep', reason: 'no filesystem pass (--no-zero)' };
  switch (fs.type) {
    case 'swap':
      return fs.detail?.includes('hibernation')
        ? { action: 'keep', reason: 'swap holds a hibernation image' }
        : { action: 'swap', reason: 'swap: header kept, the rest zeroed' };
    case 'luks':
      return { action: 'keep', reason: 'encrypted (LUKS)' };
    case 'lvm-pv':
      return { action: 'keep', reason: 'LVM physical volume: logical volumes are not handled yet' };
    case 'unknown':
      return { action: 'keep', reason: 'no filesystem recognised' };
    default:
      if (!MOUNTABLE.has(fs.type)) return { action: 'keep', reason: `${fs.type}: not handled` };
      if (!input.canMount) return { action: 'keep', reason: 'the mount engine needs root' };
      return { action: 'mount', reason: `${fs.type}: free space trimmed through a mount` };
  }
}

/** Names given to --ignore/--zero that match no volume (the CLI warns about them). */
export function unmatchedNames(names: readonly string[], volumes: readonly Volume[]): string[] {
  const known = new Set(volumes.map((v) => v.name));
  return names.filter((n) => !known.has(n));
}
