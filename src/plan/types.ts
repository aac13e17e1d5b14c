import type { KeyRequest } from '../keys/selector.js';
import type { ExtentSet } from '../disk/extent-set.js';
import { fsDriverFor } from '../fs/probe.js';
import type { FreeMap, ProbeResult } from '../fs/types.js';
import type { Volume } from '../layout/types.js';
import type { EngineChoice } from '../options.js';
import type { EngineId } from '../engines/registry.js';
import type { Verdict } from '../util/verdict.js';

/** What will be done to one volume, and why. */
export type Action =
  /** Left exactly as it is (copied as is in copy mode, untouched in place). */
  | 'keep'
  /** Made wholly zero (--zero), by the map engine. */
  | 'zero'
  /** Swap: the first page (label, UUID, signature) kept, the rest zeroed, by the map engine. */
  | 'swap'
  /**
   * Handed to the engine of that id ('map': the filesystem's own allocation map; 'appliance':
   * mount and fstrim inside a libguestfs VM; 'mount': fstrim through a host mount).
   */
  | EngineId;

/** A volume, what probing found, and the planned action with its engine and reason. */
export interface VolumePlan {
  readonly volume: Volume;
  readonly fs: ProbeResult;
  readonly action: Action;
  /** The engine that runs the plan; absent for 'keep'. */
  readonly engine?: EngineId;
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

/** A probed volume and, when its free map was read, that map. */
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
  /** Whether this process is root (loop devices, mounts, FUSE). */
  readonly root: boolean;
  /** Whether libguestfs can launch its appliance here, or why not. */
  readonly appliance: Verdict;
  /** --key / --keys-from-stdin: LUKS volumes are opened with these (src/keys/). */
  readonly keys?: KeyRequest;
}

/** The plan input with the appliance's availability found only when the plans depend on it (it may take a while). */
export type LazyPlanInput = Omit<PlanInput, 'appliance'> & { readonly appliance: () => Promise<Verdict> };

/**
 * "ext4 map not trusted (REASON)" for a volume the probe found dirty (in its driver's words) or
 * whose free map was refused, else undefined.
 */
export function untrustedMapReason({ fs, freeMap }: ProbedVolume): string | undefined {
  if (fs.dirty) return `${fs.type} map not trusted (${fsDriverFor(fs.type)?.says?.dirty ?? 'not cleanly unmounted'})`;
  return freeMap && !freeMap.trusted ? `${fs.type} map not trusted (${freeMap.reason})` : undefined;
}

/** "swap holds a hibernation image", in the driver's words, for a volume the probe found hibernated. */
export function hibernationReason(fs: ProbeResult): string {
  return `${fs.type} ${fsDriverFor(fs.type)?.says?.hibernated ?? 'holds a hibernation image'}`;
}
