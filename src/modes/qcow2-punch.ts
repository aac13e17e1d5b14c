import type { RunContext } from '../context.js';
import { openNbdClient } from '../nbd/client.js';
import { readFreeClusters } from '../qemu/qcow2-refcounts.js';
import { serveImage } from '../qemu/storage-daemon.js';
import { AsyncStack } from '../util/async-stack.js';
import { refused, type Verdict } from '../util/verdict.js';

/** What the refcount pass did to a qcow2 file. */
export type PunchOutcome = Verdict<{ punchedBytes: number }>;

/**
 * Gives the clusters a qcow2's refcounts say are free back to the host: discards that were not
 * passed down to the file in the past (a VM with discard on the qcow2 node only) left them
 * allocated. The file itself is served raw, writable (qemu's write lock keeps a VM out), the
 * refcounts are read through it, and each free range is discarded, which punches a hole.
 * Call only after the qcow2 node was closed, so its refcounts are on disk.
 */
export async function punchFreeQcow2Clusters(ctx: RunContext, file: string, workDir: string): Promise<PunchOutcome> {
  await using stack = new AsyncStack((err) => ctx.log.debug(`closing the raw view of ${file}: ${String(err)}`));
  const served = stack.use(await serveImage(ctx, { file, format: 'raw', readOnly: false, discard: true, dir: workDir }));
  const nbd = stack.use(await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName }));
  const free = await readFreeClusters(nbd, nbd.sizeBytes);
  if (!free.ok) return free;
  if (!nbd.info.canTrim) return refused('the host file cannot punch holes');
  for (const r of free.free.ranges) await nbd.trim(r.start, r.end - r.start);
  await nbd.flush();
  return { ok: true, punchedBytes: free.freeBytes };
}
