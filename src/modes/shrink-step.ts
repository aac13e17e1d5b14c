/**
 * Copy mode's "Shrink the disk" step (`--shrink`, issue 12): in one libguestfs appliance over the
 * overlay's writable export (the input is only its backing file, never written), the filesystems
 * shrink, the partitions after them move down and the table is rewritten (src/shrink/run.ts).
 * What the run examines and copies afterwards is the overlay cut to the new virtual size; the
 * output is decided again for that size.
 */
import { launchAppliance, type Appliance } from '../engines/appliance/guestfish.js';
import { findAppliance } from '../engines/appliance/host.js';
import { LAUNCH_PHASE, LAUNCH_STEP } from '../engines/appliance/session.js';
import type { BlockDevice } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { sliceReader } from '../disk/types.js';
import { probeVolume } from '../fs/probe.js';
import type { ProbeResult } from '../fs/types.js';
import { readLayout } from '../layout/read-layout.js';
import type { ShrinkRequest } from '../options.js';
import { prefixDevice } from '../shrink/prefix-device.js';
import { shrinkDisk, type ShrinkReport } from '../shrink/run.js';
import type { CopyEnv, Overlay, Source } from './copy-disk.js';
import { decideOutput } from './output-format.js';
import type { StepView } from './job.js';
import type { RunStart } from './run-setup.js';

/** The step's title in the task list and its status line. */
export const SHRINK_TITLE = 'Shrink the disk';

/** What the step leaves: the report's section, the shrunk disk, and the source with its output decided for the new size. */
export interface Shrunk {
  readonly report: ShrinkReport;
  readonly device: BlockDevice;
  readonly source: Source;
}

/**
 * Shrinks the disk on the overlay; `appliance` is the seal's when --template launched one
 * (stopped by its owner), else one is launched here and stopped when the step ends.
 */
export async function shrinkOverlay(env: CopyEnv, start: RunStart, source: Source, overlay: Overlay, request: ShrinkRequest, view: StepView, appliance?: Appliance): Promise<Shrunk> {
  const { ctx, options, daemons } = env;
  const say = (text: string): void => {
    view.retitle(`${SHRINK_TITLE}: ${text}`);
    start.say(text);
  };
  const layout = await readLayout(overlay.device);
  const filesystems = new Map<string, ProbeResult>();
  for (const v of layout.volumes) filesystems.set(v.name, await probeVolume(sliceReader(overlay.device, v.offsetBytes, v.sizeBytes)));
  const launch = async (): Promise<Appliance> => {
    const found = await findAppliance(ctx);
    if (!found.available) throw new SparsifyError('TOOL_MISSING', `--shrink needs libguestfs: ${found.reason}`);
    for (const notice of found.host.notices) ctx.log.info(notice);
    return launchAppliance(ctx, {
      host: found.host,
      drives: [{ ...overlay.export, readOnly: false, discard: true }],
      workDir: source.workDir,
      onProcess: (p) => daemons.push({ ...p, serves: 'the disk to the libguestfs appliance' }),
    });
  };
  const owned = appliance ? undefined : await start.clock.time(LAUNCH_PHASE, () => (say(LAUNCH_STEP), launch()));
  let report: ShrinkReport;
  try {
    const g = (appliance ?? owned)!;
    report = await start.clock.time('shrink', () => shrinkDisk({ appliance: g, reader: overlay.device, layout, filesystems, margin: request.margin, workDir: source.workDir, say }));
  } finally {
    await owned?.[Symbol.asyncDispose]();
  }
  const output = decideOutput(options, { format: source.info.format, virtualSizeBytes: report.virtualSizeAfterBytes });
  return { report, device: prefixDevice(overlay.device, report.virtualSizeAfterBytes), source: { ...source, output } };
}
