import { statfs } from 'node:fs/promises';
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import type { CheckTmpdir } from '../options.js';
import { humanBytes } from '../util/size.js';
import type { RunUi } from './ui.js';

/** Bytes of qcow2 L2 table per byte of virtual disk: 8 bytes per 64 KiB cluster. */
const L2_BYTES_PER_BYTE = 8 / 65536;
/** What a mount may write into the overlay: journal replay, superblocks, btrfs copy-on-write metadata. */
const MOUNT_WRITE_BYTES = 256 * 1024 * 1024;

/**
 * What this run will really write into the overlay: the filesystem pass discards or zero-fills,
 * and on a qcow2 v3 overlay both become zero clusters (metadata only), so the overlay grows by
 * its L2 tables plus what each mount writes (journal replay, superblock, btrfs metadata).
 */
export function estimateOverlayBytes(virtualSizeBytes: number, mountedVolumes: number): number {
  return Math.ceil(virtualSizeBytes * L2_BYTES_PER_BYTE) + mountedVolumes * MOUNT_WRITE_BYTES + 1024 * 1024;
}

/** virt-sparsify's --check-tmpdir, on our estimate instead of the virtual size. */
export async function checkTmpSpace(
  ctx: RunContext,
  ui: RunUi,
  dir: string,
  neededBytes: number,
  policy: CheckTmpdir,
): Promise<void> {
  if (policy === 'ignore') return;
  const st = await statfs(dir);
  const freeBytes = st.bavail * st.bsize;
  if (freeBytes >= neededBytes) return;
  const message =
    `There may not be enough free space on ${dir}: this run may write ${humanBytes(neededBytes)} there ` +
    `and ${humanBytes(freeBytes)} is free. Set TMPDIR or --tmp to a directory with more free space ` +
    `(or use --check-tmpdir=ignore|continue|warn|fail).`;
  if (policy === 'fail') {
    throw new SparsifyError('TMP_CHECK', message, { hint: 'exiting because --check-tmpdir=fail was set' });
  }
  ctx.log.warn(message);
  if (policy === 'warn' && ui.waitForReturn) await ui.waitForReturn('Press RETURN to continue or ^C to quit.');
}
