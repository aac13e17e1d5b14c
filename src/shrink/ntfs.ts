/**
 * Shrinking an NTFS filesystem in the appliance with ntfsresize: its minimum is what
 * `ntfsresize --info` reports (libguestfs' vfs-minimum-size, which also checks the volume's
 * metadata and refuses one that needs chkdsk; its files are listed then, src/shrink/files.ts),
 * the target that plus the margin; ntfsresize moves the data below the new end and writes the
 * backup boot sector there. Like virt-resize it leaves the volume marked for a check, which
 * Windows runs at its next boot.
 */
import type { Appliance } from '../engines/appliance/guestfish.js';
import { listFiles } from './files.js';
import { marginBytes, type FsResized, type ShrinkMargin, type Step } from './margin.js';

/** NTFS clusters are at most 2 MiB; the target is a whole number of 4 KiB (the usual cluster), never past the old size. */
const NTFS_ALIGN_BYTES = 4096;

/** Shrinks the NTFS on `device` (of `sizeBytes`) to its minimum plus the margin; `step` names each tool run in its error. */
export async function shrinkNtfs(
  g: Appliance,
  device: string,
  sizeBytes: number,
  margin: ShrinkMargin,
  workDir: string,
  step: Step,
): Promise<FsResized> {
  const minimumBytes = Number(await step(`measuring ${device} (ntfsresize --info)`, () => g.run('vfs-minimum-size', device)));
  if (!Number.isSafeInteger(minimumBytes) || minimumBytes <= 0) throw new Error(`vfs-minimum-size ${device}: not a size`);
  const files = await listFiles(g, device, workDir, step, 'before');
  const m = marginBytes(margin, minimumBytes);
  const targetBytes = Math.min(Math.ceil((minimumBytes + m) / NTFS_ALIGN_BYTES) * NTFS_ALIGN_BYTES, sizeBytes);
  await step(`resizing ${device} to ${targetBytes} bytes (ntfsresize)`, () => g.run('ntfsresize', device, `size:${targetBytes}`));
  return { minimumBytes, marginBytes: m, targetBytes, files };
}

/** The check after the move: ntfsresize --info must read the volume at its new place. */
export async function checkNtfs(g: Appliance, device: string): Promise<void> {
  await g.run('vfs-minimum-size', device);
}
