import { ExtentSet } from '../disk/extent-set.js';
import type { FreeMap, FsType, ProbeResult } from '../fs/types.js';
import type { Volume } from '../layout/types.js';
import type { EngineChoice } from '../options.js';

/** What will be done to one volume, and why. */
export type Action =
  /** Left exactly as it is (copied as is in copy mode, untouched in place). */
  | 'keep'
  /** Made wholly zero (--zero). */
  | 'zero'
  /** Swap (--engine mount): the first page (label, UUID, signature) kept, the rest zeroed. */
  | 'swap'
  /** The filesystem's own allocation map says which bytes are free (map engine). */
  | 'map'
  /** Mounted; free space trimmed (or zero-filled) by the kernel filesystem. */
  | 'mount';

/** A volume, what probing found, and the planned action with its reason. */
export interface VolumePlan {
  readonly volume: Volume;
  readonly fs: ProbeResult;
  readonly action: Action;
  readonly reason: string;
  /** The volume is left as it is for a reason the user did not choose: the report warns. */
  readonly warn: boolean;
  /** The trusted free map, for action 'map'. */
  readonly freeMap?: FreeMap & { trusted: true };
  /**
   * Partition-table and LVM structures inside the volume (disk offsets): whatever the action,
   * these bytes stay as they are (an EBR may sit in a logical partition's free blocks).
   */
  readonly protectedRanges: ExtentSet;
}

/** A probed volume and, when the map engine could read it, its free map. */
export interface ProbedVolume {
  readonly volume: Volume;
  readonly fs: ProbeResult;
  readonly freeMap?: FreeMap;
}

/** What the planner needs to know beyond the volumes. */
export interface PlanInput {
  readonly ignore: readonly string[];
  readonly zero: readonly string[];
  /** No filesystem pass at all (--no-zero). */
  readonly noZero: boolean;
  readonly engine: EngineChoice;
  /** Whether the mount engine can run here (root). */
  readonly canMount: boolean;
}

const MOUNTABLE: ReadonlySet<FsType> = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'ntfs', 'vfat']);

type Decision = { action: Action; reason: string; freeMap?: FreeMap & { trusted: true } };

/**
 * Decides, for each probed volume, the action and the reason the report will show; each plan
 * carries the part of `protectedRanges` (disk offsets) that lies inside its volume.
 */
export function planVolumes(
  volumes: readonly ProbedVolume[],
  input: PlanInput,
  protectedRanges: ExtentSet = ExtentSet.empty,
): VolumePlan[] {
  return volumes.map(({ volume, fs, freeMap }) => {
    const decision = decide(volume, fs, freeMap, input);
    const chosen = input.ignore.includes(volume.name) || input.noZero;
    const inside = protectedRanges.intersect(ExtentSet.of(volume.offsetBytes, volume.sizeBytes));
    return { volume, fs, ...decision, warn: decision.action === 'keep' && !chosen, protectedRanges: inside };
  });
}

function decide(volume: Volume, fs: ProbeResult, freeMap: FreeMap | undefined, input: PlanInput): Decision {
  if (input.ignore.includes(volume.name)) return { action: 'keep', reason: 'ignored (--ignore)' };
  if (input.zero.includes(volume.name)) return { action: 'zero', reason: 'zeroed as asked (--zero)' };
  if (input.noZero) return { action: 'keep', reason: 'no filesystem pass (--no-zero)' };
  if (fs.type === 'swap' && fs.detail?.includes('hibernation')) return { action: 'keep', reason: 'swap holds a hibernation image' };
  // A PV's free extents are known from LVM's metadata alone, whatever the engine.
  if ((input.engine !== 'mount' || fs.type === 'lvm-pv') && freeMap?.trusted) {
    const reason = fs.type === 'lvm-pv' ? 'LVM: extents no logical volume uses' : `${fs.type}: free blocks from its own allocation map`;
    return { action: 'map', reason, freeMap };
  }
  const untrusted = freeMap && !freeMap.trusted ? `${fs.type} map not trusted (${freeMap.reason})` : undefined;
  if (fs.type === 'swap') {
    // A swap header the map reader refused (old format, odd version) is left as it is.
    return untrusted ? { action: 'keep', reason: untrusted } : { action: 'swap', reason: 'swap: header kept, the rest zeroed' };
  }
  const cannot = cannotMount(fs.type, input);
  if (cannot) return { action: 'keep', reason: untrusted ?? cannot };
  const why = untrusted ? `${untrusted}: trimmed through a mount instead, which replays its journal` : `${fs.type}: free space trimmed through a mount`;
  return { action: 'mount', reason: why };
}

/** Why the mount engine cannot take this volume, or undefined when it can. */
function cannotMount(type: FsType, input: PlanInput): string | undefined {
  switch (type) {
    case 'luks':
      return 'encrypted (LUKS)';
    case 'lvm-pv':
      return 'LVM physical volume without volume group metadata';
    case 'unknown':
      return 'no filesystem recognised';
  }
  if (!MOUNTABLE.has(type)) return `${type}: not handled`;
  if (input.engine === 'map') return `${type}: no trusted map, and --engine map does not mount`;
  if (!input.canMount) return 'the mount engine needs root';
  return undefined;
}

/** Names given to --ignore/--zero that match no volume (the CLI warns about them). */
export function unmatchedNames(names: readonly string[], volumes: readonly Volume[]): string[] {
  const known = new Set(volumes.map((v) => v.name));
  return names.filter((n) => !known.has(n));
}
