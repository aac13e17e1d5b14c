/**
 * The free space of a Linux swap area: everything after the first page. The first page holds
 * the boot bits, the header (header.ts) and the signature in its last 10 bytes; the rest is pages
 * of swapped-out memory that no one reads after a reboot, unless a hibernation image was written
 * there.
 *
 * Pages listed as bad (nr_badpages > 0) are free too: their content is as disposable as any
 * other page, and zeroing them only writes to the image, never to a failing medium.
 */
import { ExtentSet } from '../../disk/extent-set.js';
import type { BlockReader } from '../../disk/types.js';
import { SparsifyError } from '../../errors.js';
import type { FreeMap, ProbeResult } from '../types.js';
import { SWAP_INFO_BYTES, SWAP_PAGE_SIZES, SWAP_VERSION_1, findSwapSignature, parseSwapInfo } from './header.js';

/** How much of the volume's start the signature search may take from one read. */
const HEAD_BYTES = 4096;

/** Reads a swap area's free space: all but the first page; untrusted for a hibernation image or old format. */
export async function readSwapFreeMap(reader: BlockReader): Promise<FreeMap> {
  const head = await reader.read(0, Math.min(reader.sizeBytes, HEAD_BYTES));
  const found = await findSwapSignature(reader, head);
  if (!found) {
    throw new SparsifyError('BAD_IMAGE', 'swap at byte 4086: no swap signature at the end of the first page', {
      hint: 'the volume is not a Linux swap area; use --ignore to copy it as is',
    });
  }
  const { pageBytes, kind } = found;
  if (kind === 'hibernated') return { trusted: false, reason: 'swap holds a hibernation image' };
  if (kind === 'v0') return { trusted: false, reason: 'old swap format (SWAP-SPACE, v0) is not supported' };
  const { version, badPages } = parseSwapInfo(await reader.read(0, SWAP_INFO_BYTES));
  if (version !== SWAP_VERSION_1) {
    return { trusted: false, reason: `swap header version ${version} is not supported` };
  }
  const free = ExtentSet.from([{ start: pageBytes, end: reader.sizeBytes }]);
  const bad = badPages > 0 ? `, ${badPages} bad pages (zeroed too)` : '';
  return {
    trusted: true,
    free,
    unitBytes: pageBytes,
    counterFreeBytes: free.totalBytes,
    detail: `swap v1, ${pageBytes}-byte pages${bad}`,
  };
}

/**
 * The bytes a swap area's header fills: its whole first page, of the page size the probe found
 * the signature with (64 KiB pages put it at byte 65526). Without a probed page size, the
 * largest one: keeping a few pages of stale memory is harmless, losing the signature is not.
 */
export function swapHeaderBytes(fs: ProbeResult): number {
  return fs.blockSizeBytes ?? SWAP_PAGE_SIZES[SWAP_PAGE_SIZES.length - 1]!;
}
