/**
 * Shrinking an ext2/3/4 filesystem in the appliance: e2fsck -f first (resize2fs refuses an
 * unchecked filesystem, and a damaged one must not be moved), then resize2fs -M packs it into
 * resize2fs' own minimum (the figure -P prints), then it grows back by the margin, which only adds
 * block groups. Between the check and the resize its files are listed (src/shrink/files.ts). The
 * libguestfs API does each step without a shell in the appliance. The same steps serve a partition
 * (/dev/sda1) and a logical volume (/dev/VG/LV).
 */
import type { Appliance } from '../engines/appliance/guestfish.js';
import { listFiles } from './files.js';
import { marginBytes, type FsResized, type ShrinkMargin, type Step } from './margin.js';
import { alignUp } from '../util/size.js';

/** The filesystem's block size and size from its superblock (tune2fs -l). */
async function extGeometry(g: Appliance, device: string): Promise<{ blockBytes: number; sizeBytes: number }> {
  const tune = await g.run('tune2fs-l', device);
  const blockBytes = Number(/Block size:\s*(\d+)/.exec(tune)?.[1]);
  const blockCount = Number(/Block count:\s*(\d+)/.exec(tune)?.[1]);
  if (!blockBytes || !blockCount) throw new Error(`tune2fs -l ${device}: no block size or count`);
  return { blockBytes, sizeBytes: blockCount * blockBytes };
}

/** Shrinks the ext filesystem on `device` to its minimum plus the margin, a whole number of `alignBytes` and of its blocks. */
export async function shrinkExt(g: Appliance, device: string, margin: ShrinkMargin, alignBytes: number, workDir: string, step: Step): Promise<FsResized> {
  await step(`checking ${device} before the resize (e2fsck -f)`, () => g.run('e2fsck', device, 'forceall:true'));
  // Read-only: the superblock's mount time stays before its check time, which resize2fs wants.
  const files = await listFiles(g, device, workDir, step, 'before');
  const before = await step(`reading ${device}'s superblock`, () => extGeometry(g, device));
  await step(`resizing ${device} to its minimum (resize2fs -M)`, () => g.run('resize2fs-M', device));
  const m = await step(`measuring ${device} (tune2fs -l)`, () => extGeometry(g, device));
  const minimumBytes = m.sizeBytes;
  const marginB = marginBytes(margin, minimumBytes);
  const targetBytes = Math.min(alignUp(minimumBytes + marginB, Math.max(m.blockBytes, alignBytes)), before.sizeBytes);
  if (targetBytes > minimumBytes) await step(`growing ${device} by its margin to ${targetBytes} bytes (resize2fs)`, () => g.run('resize2fs-size', device, String(targetBytes)));
  return { minimumBytes, marginBytes: marginB, targetBytes, files };
}

/** The check after everything moved: e2fsck -f -p (libguestfs always passes -f; without -p or -y e2fsck wants a terminal). */
export async function checkExt(g: Appliance, device: string, step: Step): Promise<void> {
  await step(`checking ${device} after the resize (e2fsck -f -p)`, () => g.run('e2fsck', device, 'correct:true'));
}
