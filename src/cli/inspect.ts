/** `sparsify --inspect`: runs the inspection and prints it as asked. */
import { writeFile } from 'node:fs/promises';
import type { RunContext } from '../context.js';
import { inspectDisk } from '../inspect/disk.js';
import { inspectionJson, inspectionTable, inspectionXml } from '../inspect/render.js';
import { SparsifyError } from '../errors.js';
import { pathError } from '../util/errno.js';
import type { InspectCommand, Presentation } from './parse-options.js';

/** Exit code 0 when it printed what it found; an error (thrown) otherwise. */
export async function runInspect(ctx: RunContext, request: InspectCommand, presentation: Presentation): Promise<number> {
  const quiet = presentation.quiet || request.show.kind !== 'table';
  const result = await inspectDisk(ctx, {
    disk: request.disk,
    ...(request.format ? { format: request.format } : {}),
    ...(quiet ? {} : { onLaunch: () => process.stderr.write('Launching the libguestfs appliance to inspect the disk…\n') }),
  });
  const show = request.show;
  if (show.kind === 'xml') {
    // virt-inspector's schema needs at least one operating system, and virt-inspector itself fails without one.
    if (result.operatingSystems.length === 0) {
      throw new SparsifyError('UNSUPPORTED', `no operating system was found on ${request.disk}`, { hint: 'sparsify --inspect without --xml lists its filesystems' });
    }
    process.stdout.write(inspectionXml(result));
  } else if (show.kind === 'json') {
    const text = inspectionJson(result);
    if (show.file === '-') process.stdout.write(text);
    else await writeFile(show.file, text).catch((err: unknown) => {
      throw pathError(err, 'JSON report', show.file);
    });
  } else {
    process.stdout.write(inspectionTable(result));
  }
  return 0;
}
