/**
 * A single-file sparse vmdk (monolithicSparse, streamOptimized) carries a text descriptor whose
 * extent line names the file itself; qemu-img create writes the name it was given, which for
 * copy mode is the temporary `.NAME.sparsify-PID.partial`. qemu ignores that name for a
 * single-file image, but VMware's tools show and keep it, so it is set to the final name here,
 * in place, once the image is closed and before it is renamed.
 */
import { open } from 'node:fs/promises';
import { SparsifyError } from '../errors.js';

const SECTOR_BYTES = 512;
/** The sparse extent header's magic, "KDMV" little-endian. */
const VMDK4_MAGIC = 'KDMV';

/** Replaces `"fromName"` by `"toName"` in the embedded descriptor; a vmdk without one is left alone. */
export async function renameVmdkSelfReference(path: string, fromName: string, toName: string): Promise<void> {
  if (fromName === toName) return;
  const fh = await open(path, 'r+');
  try {
    const header = Buffer.alloc(SECTOR_BYTES);
    await fh.read(header, 0, SECTOR_BYTES, 0);
    if (header.toString('utf8', 0, 4) !== VMDK4_MAGIC) return;
    const offsetBytes = Number(header.readBigUInt64LE(28)) * SECTOR_BYTES;
    const sizeBytes = Number(header.readBigUInt64LE(36)) * SECTOR_BYTES;
    if (offsetBytes === 0 || sizeBytes === 0 || sizeBytes > 1024 * 1024) return;
    const area = Buffer.alloc(sizeBytes);
    await fh.read(area, 0, sizeBytes, offsetBytes);
    const end = area.indexOf(0);
    const text = area.toString('utf8', 0, end < 0 ? sizeBytes : end);
    const from = `"${fromName}"`;
    if (!text.includes(from)) return;
    const renamed = Buffer.from(text.replace(from, `"${toName}"`), 'utf8');
    if (renamed.length >= sizeBytes) {
      throw new SparsifyError('UNSUPPORTED', `the vmdk descriptor has no room for the name ${toName}`, { hint: 'choose a shorter output name' });
    }
    const out = Buffer.alloc(sizeBytes);
    renamed.copy(out);
    await fh.write(out, 0, sizeBytes, offsetBytes);
  } finally {
    await fh.close();
  }
}
