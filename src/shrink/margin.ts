/**
 * `--shrink-margin SIZE`: the room a shrunk filesystem keeps above its minimum. Either bytes
 * (`64M`, `1G`, `512K`, plain bytes) or a share of the minimum (`5%`).
 *
 * The default, 5%, is ext4's own reserved share (mke2fs -m 5): resize2fs' minimum leaves the
 * filesystem with next to no free blocks, and the guest must boot (journal, logs, package and
 * systemd state) before cloud-init or systemd-growfs gives it its space back.
 */
import { SparsifyError } from '../errors.js';
import type { FileListing } from './files.js';

/** The margin as the user gave it. */
export type ShrinkMargin = { readonly kind: 'bytes'; readonly bytes: number } | { readonly kind: 'percent'; readonly percent: number };

export const DEFAULT_SHRINK_MARGIN: ShrinkMargin = { kind: 'percent', percent: 5 };

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

/** Parses SIZE; a USAGE error names what is accepted. */
export function parseShrinkMargin(text: string): ShrinkMargin {
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text.trim());
  if (percent) {
    const value = Number(percent[1]);
    if (value <= 100) return { kind: 'percent', percent: value };
  }
  const sized = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = sized ? UNITS[sized[2]!.toLowerCase()] : undefined;
  if (sized && unit !== undefined) {
    const bytes = Number(sized[1]) * unit;
    if (Number.isSafeInteger(bytes)) return { kind: 'bytes', bytes };
  }
  throw new SparsifyError('USAGE', `--shrink-margin: ‘${text}’ is not a size: give bytes (64M, 1G, 4096) or a share of the minimum (5%, at most 100%)`);
}

/** The margin in bytes for a filesystem whose minimum is `minimumBytes`. */
export function marginBytes(margin: ShrinkMargin, minimumBytes: number): number {
  return margin.kind === 'bytes' ? margin.bytes : Math.ceil((minimumBytes * margin.percent) / 100);
}

/** What a filesystem resizer did (ext, ntfs, btrfs): the tool's minimum, the margin, the filesystem's new size in bytes, and its files as listed before the resize (src/shrink/files.ts). */
export interface FsResized {
  readonly minimumBytes: number;
  readonly marginBytes: number;
  readonly targetBytes: number;
  readonly files: FileListing;
}

/** Runs one named step of the shrink; its failure names it (src/shrink/run.ts). */
export type Step = <T>(name: string, fn: () => Promise<T>) => Promise<T>;
