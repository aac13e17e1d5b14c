/**
 * Runs the selected operations on one inspected guest inside a launched appliance: its
 * filesystems mounted at the guest's own mount points (read-write; read-only for a dry run),
 * each operation that applies to this guest done in the table's order, everything unmounted and
 * synced after, whatever happened. Expects nothing mounted in the appliance when called.
 */
import { SparsifyError } from '../../errors.js';
import type { Appliance } from '../../engines/appliance/guestfish.js';
import { withMountsReleased } from '../../engines/appliance/volume.js';
import { sortMountpoints } from '../../inspect/guest.js';
import type { InspectedOs } from '../../inspect/types.js';
import { runAction, type Outcome } from './actions.js';
import type { Condition, Operation, OperationResult } from './types.js';

export interface ApplyOptions {
  /** Look only: mount read-only and report what would be removed or changed. */
  readonly dryRun: boolean;
}

/** What a run of the operations did to one guest. */
export interface ApplyReport {
  readonly operations: readonly OperationResult[];
  /** Mount points that could not be mounted (what lies under them was not looked at). */
  readonly warnings: readonly string[];
}

/** True when the guest is one the condition describes; a field the guest lacks never matches a list. */
export function conditionHolds(condition: Condition | undefined, os: InspectedOs): boolean {
  if (!condition) return true;
  const within = (list: readonly string[] | undefined, value: string | undefined) => list === undefined || (value !== undefined && list.includes(value));
  return (
    within(condition.osTypes, os.type) &&
    within(condition.distros, os.distro) &&
    within(condition.packageFormats, os.packageFormat) &&
    within(condition.packageManagers, os.packageManagement)
  );
}

/** Why an operation does nothing on this guest, or undefined when it applies. */
export function notApplicable(op: Operation, os: InspectedOs): string | undefined {
  if (conditionHolds(op.appliesTo, os)) return undefined;
  const what = [os.type, os.distro, os.packageManagement].filter((v) => v !== undefined).join(', ');
  return `not for this guest (${what})`;
}

/** Applies `selected` to the guest `os` (see the module comment); resolves with what each did. */
export function applyOperations(g: Appliance, os: InspectedOs, selected: readonly Operation[], options: ApplyOptions): Promise<ApplyReport> {
  return withMountsReleased(g, async () => {
    const warnings = await mountGuest(g, os, options.dryRun);
    const operations: OperationResult[] = [];
    for (const op of selected) operations.push(await applyOperation(g, os, op, options.dryRun));
    return { operations, warnings };
  });
}

async function applyOperation(g: Appliance, os: InspectedOs, op: Operation, dryRun: boolean): Promise<OperationResult> {
  const skipped = notApplicable(op, os);
  if (skipped) return { name: op.name, skipped, changes: [], warnings: [] };
  const out: Outcome = { changes: [], warnings: [] };
  for (const action of op.actions) if (conditionHolds(action.when, os)) await runAction(g, action, dryRun, out);
  return { name: op.name, ...out };
}

/**
 * Mounts the guest's filesystems at its mount points, the shortest first (a parent before what
 * is mounted in it). The root must mount; another mount point that cannot (its directory
 * missing, a filesystem the appliance cannot read) is a warning, as in virt-sysprep.
 */
async function mountGuest(g: Appliance, os: InspectedOs, dryRun: boolean): Promise<string[]> {
  const warnings: string[] = [];
  // A guest whose fstab does not name its root still has one: inspection found it.
  const table = os.mountpoints.some((m) => m.mountpoint === '/') ? [...os.mountpoints] : [{ mountpoint: '/', device: os.root }, ...os.mountpoints];
  for (const { mountpoint, device } of sortMountpoints(table)) {
    try {
      await g.run(dryRun ? 'mount-ro' : 'mount', device, mountpoint);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (mountpoint === '/') throw new SparsifyError('TOOL_FAILED', `cannot mount the guest's root ${device}: ${reason}`, { cause: err });
      warnings.push(`${mountpoint} (${device}) not mounted, so not cleaned: ${reason}`);
    }
  }
  return warnings;
}
