/**
 * The engine seam. An engine is one way of freeing a volume's space (the map engine reads the
 * filesystem's own allocation map; the mount engine trims through a kernel mount; an appliance
 * engine would do it inside a VM). Each registers once in registry.ts; the planner (src/plan/)
 * asks each whether it can take a volume, and the volume pass (modes/volume-pass.ts) opens a
 * session per disk for each engine some volume is planned for, and runs the plans through it.
 */
import type { RunContext } from '../context.js';
import type { BlockDevice } from '../disk/types.js';
import type { ProbedVolume, VolumePlan } from '../plan/types.js';
import type { ServingProcess } from '../qemu/storage-daemon.js';
import type { Appliance } from './appliance/guestfish.js';
import type { Verdict as HostVerdict } from '../util/verdict.js';

/** Usable, or the reason why not; `blame` says whether the volume or this host is the cause. */
export type Verdict =
  | { readonly usable: true; readonly reason: string }
  | { readonly usable: false; readonly reason: string; readonly blame: 'volume' | 'host' };

/** What an engine may ask of the host when it decides whether it can take a volume. */
export interface HostFacts {
  /** Loop devices, mounts and FUSE files need root. */
  readonly root: boolean;
  /** libguestfs can launch its appliance here, or the one-line reason why not (naming the package to install). */
  readonly appliance: HostVerdict;
}

/** Where a disk's volumes are worked on: the copy overlay, or the image itself in place. */
export interface EngineTarget {
  /** The disk over NBD: what byte-level engines write (in place) and everything reads. */
  readonly device: BlockDevice;
  /**
   * The writable NBD export of the same disk, for an engine that needs another view of it (a
   * FUSE file for loop devices, a VM's drive). Absent when nothing may be written (copy mode
   * without an overlay).
   */
  readonly export?: { readonly socketPath: string; readonly exportName: string };
  /** A private directory of this run, removed after it. */
  readonly workDir: string;
  readonly inPlace: boolean;
  /** Where the copy's overlay grows (absent in place): an engine failure there may mean it is full. */
  readonly overlayDir?: string;
  /** Told of every process an engine starts to serve the disk, so a run can name it when it dies. */
  readonly onProcess?: (process: ServingProcess) => void;
  /**
   * An appliance launched, or being launched, over `export` (--template's seal step; a launch
   * started while the disk was examined, appliance/prelaunch.ts), for the appliance engine to
   * wait for and use instead of launching its own; its owner stops it, not the engine.
   */
  readonly appliance?: Promise<Appliance>;
}

/** What happened to one volume. */
export interface VolumeOutcome {
  readonly handled: string;
  readonly reason: string;
  /** Set when the zero sweep after the pass cannot see it (copy mode skips mapped free space). */
  readonly reclaimedBytes?: number;
}

/**
 * What an engine shows of its work on one volume: each step it names (launching a VM, mounting,
 * trimming) becomes the volume's line in the task list and a status message, and is timed for
 * the report under `phase` (or its text).
 */
export interface EngineSteps {
  step<T>(text: string, fn: () => Promise<T>, phase?: string): Promise<T>;
}

/** Steps shown nowhere: for callers with no task list (tests, the library's silent runs). */
export const quietSteps: EngineSteps = { step: (_text, fn) => fn() };

/** An engine opened on one disk: runs the plans given to it; disposed once, after the last. */
export interface EngineSession extends AsyncDisposable {
  run(plan: VolumePlan, steps: EngineSteps): Promise<VolumeOutcome>;
}

/** One entry of the engine table. */
export interface Engine<Id extends string = string> {
  /** The `--engine` value and the report's action for the volumes it takes. */
  readonly id: Id;
  /** Programs the preflight checks when some volume is planned for this engine. */
  readonly tools: readonly string[];
  /** It writes into the disk, so copy mode must give it a writable overlay over the input. */
  readonly needsOverlay: boolean;
  /** It reaches the disk as a file (loop devices): the session makes one from `target.export`. */
  readonly needsFuseFile: boolean;
  /** What the status line says before a volume is handled: [copy mode, in place]. */
  readonly verbs: readonly [copy: string, inPlace: string];
  /** What `--engine OTHER` says it does not do, in "no trusted map, and --engine map does not …". */
  readonly does: string;
  /** Whether it can take this volume on this host; a usable verdict's reason goes to the report. */
  accepts(volume: ProbedVolume, host: HostFacts): Verdict;
  /** Opens the engine for one disk; called only when some volume is planned for it. */
  open(ctx: RunContext, target: EngineTarget): Promise<EngineSession>;
}
