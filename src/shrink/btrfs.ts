/**
 * Shrinking a single-device btrfs in the appliance, with libguestfs' own btrfs commands as the
 * ext and ntfs resizers use theirs (no shell): `btrfs check` (read-only; a filesystem it finds
 * damaged is not moved), then mounted: its files are listed (src/shrink/files.ts), its minimum is
 * libguestfs' vfs-minimum-size, which for btrfs is `btrfs inspect-internal min-dev-size` (the
 * allocated chunks, plus room to relocate the largest), the target that plus the margin; `btrfs
 * filesystem resize` relocates the chunks past the new end below it. Unmounted again, the
 * partition shrinks after it, and `btrfs check` reads it once more where it then lies
 * (src/shrink/run.ts). A filesystem over several devices is never shrunk (src/shrink/decide.ts):
 * its other devices are not on this disk.
 */
import type { Appliance } from '../engines/appliance/guestfish.js';
import { listingStep, listMounted } from './files.js';
import { marginBytes, type FsResized, type ShrinkMargin, type Step } from './margin.js';
import { alignUp } from '../util/size.js';

/** btrfs' sector size when the superblock gave none: sizes are whole sectors. */
const BTRFS_SECTOR_BYTES = 4096;

/** Where the filesystem is mounted in the appliance while it is resized. */
const MOUNTPOINT = '/';

/** vfs-minimum-size's answer, a byte count; anything else is an error naming the device. */
export function parseMinimumBytes(text: string, device: string): number {
  const bytes = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`btrfs inspect-internal min-dev-size ${device}: not a size: ‘${text.trim()}’`);
  return bytes;
}

/** The new size: the minimum plus the margin, a whole number of sectors and of `alignBytes`, never past the old size. */
export function btrfsTargetBytes(minimumBytes: number, margin: ShrinkMargin, sizeBytes: number, sectorBytes: number, alignBytes: number): { marginBytes: number; targetBytes: number } {
  const m = marginBytes(margin, minimumBytes);
  const unit = Math.max(sectorBytes, alignBytes);
  return { marginBytes: m, targetBytes: Math.min(alignUp(minimumBytes + m, unit), Math.floor(sizeBytes / unit) * unit) };
}

/** Shrinks the btrfs on `device` (of `sizeBytes`) to its minimum plus the margin; `step` names each tool run in its error. */
export async function shrinkBtrfs(
  g: Appliance,
  device: string,
  sizeBytes: number,
  sectorBytes: number | undefined,
  margin: ShrinkMargin,
  alignBytes: number,
  workDir: string,
  step: Step,
): Promise<FsResized> {
  await checkBtrfs(g, device, step, 'before');
  await step(`mounting ${device}`, () => g.run('mount', device, MOUNTPOINT));
  try {
    const files = await step(listingStep(device, 'before'), () => listMounted(g, device, workDir));
    const text = await step(`measuring ${device} (btrfs inspect-internal min-dev-size)`, () => g.run('vfs-minimum-size', device));
    const minimumBytes = parseMinimumBytes(text, device);
    const { marginBytes: m, targetBytes } = btrfsTargetBytes(minimumBytes, margin, sizeBytes, sectorBytes ?? BTRFS_SECTOR_BYTES, alignBytes);
    if (targetBytes < sizeBytes) {
      await step(`resizing ${device} to ${targetBytes} bytes (btrfs filesystem resize)`, () => g.run('btrfs-filesystem-resize', MOUNTPOINT, `size:${targetBytes}`));
    }
    await step(`unmounting ${device}`, () => g.run('umount', MOUNTPOINT));
    return { minimumBytes, marginBytes: m, targetBytes, files };
  } catch (err) {
    await g.run('umount-all').catch(() => undefined);
    throw err;
  }
}

/** `btrfs check` (read-only: libguestfs passes no --repair) on the unmounted filesystem. */
export async function checkBtrfs(g: Appliance, device: string, step: Step, when: 'before' | 'after'): Promise<void> {
  await step(`checking ${device} ${when} the resize (btrfs check --readonly)`, () => g.run('btrfs-fsck', device));
}
