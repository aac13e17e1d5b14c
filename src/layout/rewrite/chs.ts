/**
 * Cylinder-head-sector addresses in MBR entries (the 3-byte CHS fields of a DOS partition
 * entry). Nothing reads them on an LBA disk, but fdisk compares them with the LBA fields, so a
 * rewritten entry gets them as fdisk and gdisk write them: geometry 255 heads × 63 sectors, and
 * an address past cylinder 1023 written as fdisk does, the maximum 1023/254/63 (bytes FE FF FF),
 * or, in a GPT's protective entry, as gdisk does and UEFI 2.10 §5.2.3 says, FF FF FF.
 */

/** How an address past cylinder 1023 is written. */
export type ChsOverflow = 'max-chs' | 'all-ones';

const HEADS = 255;
const SECTORS_PER_TRACK = 63;
const MAX_CYLINDER = 1023;

/** The three CHS bytes (head, sector | cylinder high bits, cylinder low byte) of an LBA. */
export function chsBytes(lba: number, overflow: ChsOverflow = 'max-chs'): [number, number, number] {
  let cylinder = Math.floor(lba / (HEADS * SECTORS_PER_TRACK));
  let head = Math.floor(lba / SECTORS_PER_TRACK) % HEADS;
  let sector = (lba % SECTORS_PER_TRACK) + 1;
  if (cylinder > MAX_CYLINDER) {
    if (overflow === 'all-ones') return [0xff, 0xff, 0xff];
    cylinder = MAX_CYLINDER;
    head = HEADS - 1;
    sector = SECTORS_PER_TRACK;
  }
  return [head, (sector & 0x3f) | ((cylinder >> 2) & 0xc0), cylinder & 0xff];
}
