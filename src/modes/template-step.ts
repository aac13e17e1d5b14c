/**
 * Copy mode's "Seal the guest" step (`--template`): one libguestfs appliance launched over the
 * overlay's writable export (the input is only its backing file, never written), the guest
 * inspected and the selected operations run (src/template/seal.ts), everything unmounted and
 * synced. The appliance is then kept for the free-space pass, which would otherwise launch its
 * own (a TCG launch costs about a minute), or stopped at once when no volume is planned for it.
 */
import { launchAppliance, type Appliance } from '../engines/appliance/guestfish.js';
import { findAppliance } from '../engines/appliance/host.js';
import { LAUNCH_PHASE, LAUNCH_STEP } from '../engines/appliance/session.js';
import { SparsifyError } from '../errors.js';
import type { TemplateRequest } from '../options.js';
import type { TemplateReport } from '../report/types.js';
import { sealGuest, type SealSteps } from '../template/seal.js';
import type { CopyEnv, Overlay, Source } from './copy-disk.js';
import type { StepView } from './job.js';
import type { RunStart } from './run-setup.js';

/** The step's title in the task list and its status line. */
export const SEAL_TITLE = 'Seal the guest';

/** What the step leaves: the report's template section, and the appliance (stopped by `release`, or with the run). */
export interface Sealed {
  readonly report: TemplateReport;
  readonly appliance: Appliance;
  /** Stops the appliance now (idempotent); the run's stack stops it otherwise. */
  release(): Promise<void>;
}

/** Launches the appliance over the overlay and seals the guest in it (see the module comment). */
export async function sealOverlay(env: CopyEnv, start: RunStart, source: Source, overlay: Overlay, request: TemplateRequest, view: StepView): Promise<Sealed> {
  const { ctx, options, stack, daemons } = env;
  const steps: SealSteps = {
    step: (text, fn, phase) => {
      view.retitle(`${SEAL_TITLE}: ${text}`);
      start.say(text);
      return start.clock.time(phase, fn);
    },
  };
  const g = await steps.step(
    LAUNCH_STEP,
    async () => {
      const found = await findAppliance(ctx);
      if (!found.available) throw new SparsifyError('TOOL_MISSING', `--template needs libguestfs: ${found.reason}`);
      for (const notice of found.host.notices) ctx.log.info(notice);
      return stack.use(
        await launchAppliance(ctx, {
          host: found.host,
          // A dry run gets a read-only drive: libguestfs then keeps even its own writes (a journal replay) in a throwaway overlay.
          drives: [{ ...overlay.export, readOnly: request.dryRun, discard: !request.dryRun }],
          workDir: source.workDir,
          onProcess: (p) => daemons.push({ ...p, serves: 'the disk to the libguestfs appliance' }),
        }),
      );
    },
    LAUNCH_PHASE,
  );
  const report = await sealGuest(g, { disk: options.input, operations: request.operations, dryRun: request.dryRun }, steps);
  for (const warning of report.warnings) ctx.log.warn(warning);
  return { report, appliance: g, release: async () => g[Symbol.asyncDispose]() };
}
