/**
 * `sparsify --inspect DISK`: the disk served read-only (qemu's shared lock, as copy mode's input),
 * one appliance over it with a read-only drive, libguestfs inspection, everything stopped and
 * removed after. The disk is never written, and never mounted in the host kernel.
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import { launchAppliance } from '../engines/appliance/guestfish.js';
import { findAppliance } from '../engines/appliance/host.js';
import { makeWorkDir } from '../host/work-dir.js';
import { warnIfProbedRaw } from '../modes/run-setup.js';
import { checkImage, readImageInfo } from '../qemu/img.js';
import { serveImage } from '../qemu/storage-daemon.js';
import { AsyncStack } from '../util/async-stack.js';
import { pathError } from '../util/errno.js';
import { inspectOperatingSystems, listFilesystems } from './guest.js';
import type { DiskInspection } from './types.js';

export interface InspectRequest {
  readonly disk: string;
  readonly format?: string;
  /** Told before the appliance launches (it takes seconds, a minute under TCG). */
  readonly onLaunch?: () => void;
}

/** Inspects one disk image read-only inside the libguestfs appliance. */
export async function inspectDisk(ctx: RunContext, request: InspectRequest): Promise<DiskInspection> {
  const info = await readImageInfo(ctx, request.disk, request.format ? { format: request.format } : {});
  warnIfProbedRaw(ctx, info, request.disk);
  await checkImage(ctx, request.disk, info.format);
  const found = await findAppliance(ctx);
  if (!found.available) throw new SparsifyError('TOOL_MISSING', found.reason);
  for (const notice of found.host.notices) ctx.log.info(notice);

  await using stack = new AsyncStack((err) => ctx.log.warn(`cleanup: ${String(err)}`));
  const parent = tmpdir();
  const workDir = await makeWorkDir(parent).catch((err: unknown) => {
    throw pathError(err, 'temporary directory', parent);
  });
  stack.defer(() => rm(workDir, { recursive: true, force: true }));
  const served = stack.use(await serveImage(ctx, { file: request.disk, format: info.format, readOnly: true, discard: false, dir: workDir }));
  request.onLaunch?.();
  const g = stack.use(
    await launchAppliance(ctx, {
      host: found.host,
      drives: [{ socketPath: served.socketPath, exportName: served.exportName, readOnly: true, discard: false }],
      workDir,
    }),
  );
  const filesystems = await listFilesystems(g);
  const operatingSystems = await inspectOperatingSystems(g, filesystems);
  return { disk: request.disk, format: info.format, operatingSystems, filesystems };
}
