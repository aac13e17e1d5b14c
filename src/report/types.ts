import type { EngineId } from '../engines/registry.js';
import type { Action } from '../plan/plan-volumes.js';
import type { OperationResult } from '../template/operations/types.js';
import type { ShrinkReport } from '../shrink/run.js';

/** How one volume was handled, for the report and --json. */
export interface VolumeReport {
  readonly name: string;
  readonly type: string;
  readonly detail?: string;
  readonly offsetBytes: number;
  readonly sizeBytes: number;
  /** What was planned. */
  readonly action: Action;
  /** The engine that handled it (--zero and swap are the map engine's); absent for a volume planned to be kept. */
  readonly engine?: EngineId;
  /** What actually happened: 'trimmed', 'zero-filled', 'zeroed', 'swap cleared', 'copied as is', 'left alone'. */
  readonly handled: string;
  /** Why, in one line. */
  readonly reason: string;
  /** Bytes of this volume that read as zero after the pass and did not before. */
  readonly reclaimedBytes: number;
}

/** Elapsed time of one phase. */
export interface PhaseTiming {
  readonly name: string;
  readonly ms: number;
}

/** What the copier did. */
export interface CopySummary {
  readonly totalBytes: number;
  readonly dataBytesWritten: number;
  readonly zeroExtentBytes: number;
  readonly zeroScannedBytes: number;
  readonly skippedFreeBytes: number;
  readonly readBytes: number;
  /** --keep-backing: bytes neither free nor read, which OUT leaves to its backing file. */
  readonly keptInBackingBytes?: number;
  readonly elapsedMs: number;
}

/** A volume --verify did not check, and why. */
export interface NotVerified {
  readonly name: string;
  readonly reason: string;
}

/** What --verify checked (src/verify/); a mismatch is an error, so a report only holds successes. */
export interface VerifyReport {
  /** identicalBytes + zeroBytes. */
  readonly checkedBytes: number;
  /** Bytes found unchanged: copy mode, equal to what the copier read; in place, to their checksum before the pass. */
  readonly identicalBytes: number;
  /** Bytes sparsify made zero (skipped free space, --zero, swap), found reading as zero. */
  readonly zeroBytes: number;
  readonly ms: number;
  readonly ok: boolean;
  /** In place: the volumes the mount engine trimmed (a journal replay changes used blocks legitimately). */
  readonly notVerified: readonly NotVerified[];
}

/** The guest --template sealed, as inspection found it. */
export interface TemplateGuest {
  /** The root filesystem, in the appliance's names (/dev/sda1). */
  readonly root: string;
  /** linux, windows, … */
  readonly type: string;
  readonly distro?: string;
  readonly productName?: string;
  readonly majorVersion: number;
  readonly minorVersion: number;
  readonly hostname?: string;
}

/** --template: what sealing the guest did, or in a dry run would do. */
export interface TemplateReport {
  readonly dryRun: boolean;
  readonly guest: TemplateGuest;
  /** Every selected operation in the table's order: the paths it removed, emptied or edited (bytes: du), or why it was skipped. */
  readonly operations: readonly OperationResult[];
  /** Disk space the removed and emptied files held: what the free-space pass can reclaim. */
  readonly removedBytes: number;
  /** What was not done and why (a mount point that did not mount, a path left alone, Windows). */
  readonly warnings: readonly string[];
}

/** Copy mode, an input over a backing file: what became of the chain (src/modes/backing-chain.ts). */
export interface ChainReport {
  /** 'flattened': every layer copied into an output with no backing file; 'kept': OUT is a qcow2 over `base`. */
  readonly handled: 'flattened' | 'kept';
  /** Kept: the backing file as OUT's header names it; flattened: IN's backing file. */
  readonly base: string;
}

/** The whole report of a run: what --json writes. */
export interface RunReport {
  readonly tool: 'sparsify';
  readonly version: string;
  readonly mode: 'copy' | 'in-place';
  readonly input: {
    readonly path: string;
    readonly format: string;
    readonly virtualSizeBytes: number;
    /** Bytes allocated on the host before the run. */
    readonly allocatedBytes: number;
  };
  readonly output?: {
    readonly path: string;
    readonly format: string;
    readonly compressed: boolean;
    readonly allocatedBytes: number;
  };
  /** In place: bytes allocated on the host after the run. */
  readonly allocatedBytesAfter?: number;
  /** Copy mode with an input over a backing file. */
  readonly chain?: ChainReport;
  /** Absent after --template --dry-run, which examines no filesystem. */
  readonly partitionTable?: string;
  readonly volumes: readonly VolumeReport[];
  readonly warnings: readonly string[];
  /** What else was done, in one line each (e.g. the qcow2 refcount pass in place). */
  readonly notes?: readonly string[];
  readonly copy?: CopySummary;
  /** With --verify. */
  readonly verify?: VerifyReport;
  /** With --template. */
  readonly template?: TemplateReport;
  /** With --shrink: the virtual size before and after, per volume its old and new size or why it kept it. */
  readonly shrink?: ShrinkReport;
  readonly phases: readonly PhaseTiming[];
  readonly totalMs: number;
}
