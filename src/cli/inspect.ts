/** `sparsify --inspect`: runs the inspection and prints it as asked. */
import { writeFile } from 'node:fs/promises';
import type { RunContext } from '../context.js';
import { inspectDisk } from '../inspect/disk.js';
import { inspectionJson, inspectionTable, inspectionXml } from '../inspect/render.js';
import type { DiskInspection } from '../inspect/types.js';
import { SparsifyError } from '../errors.js';
import { pathError } from '../util/errno.js';
import type { InspectCommand, Presentation } from './parse-options.js';

/** Exit code 0 when it printed what it found; an error (thrown) otherwise. */
export async function runInspect(ctx: RunContext, request: InspectCommand, presentation: Presentation): Promise<number> {
  const quiet = presentation.quiet || stdoutIsDocument(request.show);
  const result = await inspectDisk(ctx, {
    disk: request.disk,
    ...(request.format ? { format: request.format } : {}),
    ...(quiet ? {} : { onLaunch: () => process.stderr.write('Launching the libguestfs appliance to inspect the disk…\n') }),
  });
  const out = inspectionOutputs(request.show, result);
  if (out.jsonFile) {
    const { path, text } = out.jsonFile;
    await writeFile(path, text).catch((err: unknown) => {
      throw pathError(err, 'JSON report', path);
    });
  }
  process.stdout.write(out.stdout);
  return 0;
}

/** --xml and --json - make stdout a document: nothing else may go there. */
function stdoutIsDocument(show: InspectCommand['show']): boolean {
  return show.kind === 'xml' || (show.kind === 'json' && show.file === '-');
}

/** What --inspect shows: --xml's XML or --json -'s JSON on stdout, else the table; --json FILE's JSON too. */
export function inspectionOutputs(show: InspectCommand['show'], result: DiskInspection): { stdout: string; jsonFile?: { path: string; text: string } } {
  if (show.kind === 'xml') {
    // virt-inspector's schema needs at least one operating system, and virt-inspector itself fails without one.
    if (result.operatingSystems.length === 0) {
      throw new SparsifyError('UNSUPPORTED', `no operating system was found on ${result.disk}`, { hint: 'sparsify --inspect without --xml lists its filesystems' });
    }
    return { stdout: inspectionXml(result) };
  }
  if (show.kind === 'json' && show.file === '-') return { stdout: inspectionJson(result) };
  return { stdout: inspectionTable(result), ...(show.kind === 'json' ? { jsonFile: { path: show.file, text: inspectionJson(result) } } : {}) };
}
