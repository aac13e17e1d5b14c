/**
 * Sealing a guest for export (`--template`): inspect the disk in a launched appliance, run the
 * selected operations on the one operating system found, and say what they did. The appliance
 * is the caller's (one launch serves the seal and, when needed, the free-space pass); everything
 * is unmounted and synced when this returns (apply.ts), so the filesystems are clean again and
 * their own maps can be trusted by the pass that follows.
 */
import { SparsifyError } from '../errors.js';
import type { Appliance } from '../engines/appliance/guestfish.js';
import { inspectOperatingSystems, listFilesystems } from '../inspect/guest.js';
import type { InspectedOs } from '../inspect/types.js';
import type { TemplateGuest, TemplateReport } from '../report/types.js';
import { applyOperations, type ApplyReport } from './operations/apply.js';
import { OPERATIONS } from './operations/table.js';
import type { Operation } from './operations/types.js';

/** What to seal and how. */
export interface SealRequest {
  /** The disk's name for messages (the input's path). */
  readonly disk: string;
  /** Operation names, already checked against the table. */
  readonly operations: readonly string[];
  readonly dryRun: boolean;
}

/** What a caller is told as sealing goes (each a status line). */
export interface SealSteps {
  step<T>(text: string, fn: () => Promise<T>, phase: string): Promise<T>;
}

/** The status lines of sealing, and the phases their time is reported under. */
export const SEAL_STEP = {
  inspect: { text: 'Inspect the guest', phase: 'inspection' },
  operations: { text: 'Run the templating operations', phase: 'operations' },
} as const;

/** The warning every Windows guest gets: its identity lives where only Windows itself can reset it. */
export const WINDOWS_WARNING =
  'Windows guest: only the generic operations apply; its identity (SID, computer name, activation) needs sysprep.exe run inside the guest before export';

/** Inspects the disk in `g` and runs the operations on its guest; throws when there is not exactly one operating system. */
export async function sealGuest(g: Appliance, request: SealRequest, steps: SealSteps): Promise<TemplateReport> {
  const os = await steps.step(SEAL_STEP.inspect.text, () => findGuest(g, request.disk), SEAL_STEP.inspect.phase);
  const selected = selectByName(request.operations);
  const applied = await steps.step(SEAL_STEP.operations.text, () => applyOperations(g, os, selected, { dryRun: request.dryRun }), SEAL_STEP.operations.phase);
  return templateReport(os, applied, request.dryRun);
}

/** The one operating system on the disk; none or several is an error that says so. */
async function findGuest(g: Appliance, disk: string): Promise<InspectedOs> {
  const systems = await inspectOperatingSystems(g, await listFilesystems(g));
  if (systems.length === 0) {
    throw new SparsifyError('UNSUPPORTED', `no guest operating system found on ${disk}: --template needs one to seal`, {
      hint: "sparsify --inspect shows what is on the disk; without --template it is sparsified as it is",
    });
  }
  if (systems.length > 1) {
    const roots = systems.map((s) => `${s.root} (${s.distro ?? s.type})`).join(', ');
    throw new SparsifyError('UNSUPPORTED', `${systems.length} operating systems found on ${disk} (${roots}): --template seals a disk with one`);
  }
  return systems[0]!;
}

/** The table's operations with these names, in the table's order. */
function selectByName(names: readonly string[]): Operation[] {
  return OPERATIONS.filter((op) => names.includes(op.name));
}

/** The report's template section, from inspection and what the operations did. */
export function templateReport(os: InspectedOs, applied: ApplyReport, dryRun: boolean): TemplateReport {
  const guest: TemplateGuest = {
    root: os.root,
    type: os.type,
    ...(os.distro ? { distro: os.distro } : {}),
    ...(os.productName ? { productName: os.productName } : {}),
    majorVersion: os.majorVersion,
    minorVersion: os.minorVersion,
    ...(os.hostname ? { hostname: os.hostname } : {}),
  };
  const removedBytes = applied.operations
    .flatMap((op) => op.changes)
    .filter((c) => c.change === 'removed' || c.change === 'emptied')
    .reduce((sum, c) => sum + (c.bytes ?? 0), 0);
  const warnings = [
    ...(os.type === 'windows' ? [WINDOWS_WARNING] : []),
    ...applied.warnings,
    ...applied.operations.flatMap((op) => op.warnings.map((w) => `${op.name}: ${w}`)),
  ];
  return { dryRun, guest, operations: applied.operations, removedBytes, warnings };
}
