/**
 * The free space of a Linux swap area (include/linux/swap.h, union swap_header): everything
 * after the first page. The first page holds the boot bits, version, last page, bad-page list,
 * UUID and label, and the signature in its last 10 bytes; the rest is pages of swapped-out
 * memory that no one reads after a reboot, unless a hibernation image was written there.
 *
 * Pages listed as bad (nr_badpages > 0) are free too: their content is as disposable as any
 * other page, and zeroing them only writes to the image, never to a failing medium.
 * Page sizes 4 KiB to 64 KiB are tried in order, as the kernel's own PAGE_SIZE may differ.
 */
import { ExtentSet } from '../disk/extent-set.js';
import type { BlockReader } from '../disk/types.js';
import { SparsifyError } from '../errors.js';
import { hasAscii, viewOf } from '../binary/bytes.js';
import type { FreeMap, ProbeResult } from './types.js';

const SWAP_PAGE_SIZES = [4096, 8192, 16384, 32768, 65536];
/** The signature fills the last 10 bytes of the first page (swap_header.magic). */
const SIGNATURE_BYTES = 10;
const SWAP_V1 = 'SWAPSPACE2';
const SWAP_V0 = 'SWAP-SPACE';
/**
 * Hibernation signatures that replace the swap signature: the kernel's swsusp (S1SUSPEND,
 * S2SUSPEND; kernel/power/swap.c), uswsusp (ULSUSPEND) and TuxOnIce (LINHIB0001), as libblkid
 * lists them; any other signature naming suspend or hibernation counts too.
 */
const HIBERNATION_SIGNATURES = ['S1SUSPEND', 'S2SUSPEND', 'ULSUSPEND', 'LINHIB0001'];
const HIBERNATION_WORDS = /SUSPEND|SWSUSP|HIB/;
/** swap_header.info: version, last_page, nr_badpages follow 1024 boot bytes (u32, machine order). */
const INFO = { version: 1024, lastPage: 1028, badPages: 1032 } as const;
const INFO_BYTES = 1036;
const SUPPORTED_VERSION = 1;

type Signature = 'v1' | 'v0' | 'hibernation';

function signatureOf(bytes: Uint8Array): Signature | undefined {
  if (hasAscii(bytes, 0, SWAP_V1)) return 'v1';
  if (hasAscii(bytes, 0, SWAP_V0)) return 'v0';
  if (HIBERNATION_SIGNATURES.some((s) => hasAscii(bytes, 0, s))) return 'hibernation';
  return HIBERNATION_WORDS.test(new TextDecoder('latin1').decode(bytes)) ? 'hibernation' : undefined;
}

/** The first page size whose last bytes hold a signature we know, or undefined. */
async function findSignature(reader: BlockReader): Promise<{ pageBytes: number; signature: Signature } | undefined> {
  for (const pageBytes of SWAP_PAGE_SIZES) {
    if (pageBytes > reader.sizeBytes) break;
    const signature = signatureOf(await reader.read(pageBytes - SIGNATURE_BYTES, SIGNATURE_BYTES));
    if (signature) return { pageBytes, signature };
  }
  return undefined;
}

/** The v1 header's version and bad-page count, in the byte order of the machine that wrote it. */
export function parseSwapInfo(info: Uint8Array): { version: number; badPages: number } {
  const v = viewOf(info);
  const littleEndian = v.getUint32(INFO.version, true) === SUPPORTED_VERSION;
  return { version: v.getUint32(INFO.version, littleEndian), badPages: v.getUint32(INFO.badPages, littleEndian) };
}

/** Reads a swap area's free space: all but the first page; untrusted for a hibernation image or old format. */
export async function readSwapFreeMap(reader: BlockReader): Promise<FreeMap> {
  const found = await findSignature(reader);
  if (!found) {
    throw new SparsifyError('BAD_IMAGE', 'swap at byte 4086: no swap signature at the end of the first page', {
      hint: 'the volume is not a Linux swap area; use --ignore to copy it as is',
    });
  }
  const { pageBytes, signature } = found;
  if (signature === 'hibernation') return { trusted: false, reason: 'swap holds a hibernation image' };
  if (signature === 'v0') return { trusted: false, reason: 'old swap format (SWAP-SPACE, v0) is not supported' };
  const { version, badPages } = parseSwapInfo(await reader.read(0, INFO_BYTES));
  if (version !== SUPPORTED_VERSION) {
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
