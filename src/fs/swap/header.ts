/**
 * The first page of a Linux swap area (include/linux/swap.h, union swap_header), and the one
 * table of its signatures that the probe and the free-map reader both use.
 *
 * The signature fills the last 10 bytes of the first page, whose size is the PAGE_SIZE of the
 * kernel that ran mkswap: 4 KiB to 64 KiB are tried in order, as libblkid does. "SWAPSPACE2" is
 * swap v1 (version, last page, bad pages, UUID and label after 1024 boot bytes), "SWAP-SPACE"
 * the old v0. A hibernation image replaces the signature: the kernel's swsusp writes
 * "S1SUSPEND" (kernel/power/swap.c, HIBERNATE_SIG; "S2SUSPEND" in older kernels), uswsusp
 * "ULSUSPEND", TuxOnIce "LINHIB0001". TuxOnIce may instead leave "SWAPSPACE2" in place and put
 * its own binary magic at byte 0, which libblkid (superblocks/swap.c) reads as swsuspend, not
 * swap: so do we. Signatures are matched exactly (the suspend ones on their 9 letters, as
 * libblkid does); nothing else counts, since random bytes may spell anything.
 */
import { cString, hasAscii, uuidText, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';

/** The page sizes a swap area may have been made with, smallest first. */
export const SWAP_PAGE_SIZES: readonly number[] = [4096, 8192, 16384, 32768, 65536];
const SIGNATURE_BYTES = 10;
/** What each signature says: a usable swap area of one format, or a hibernation image. */
export type SwapKind = 'v1' | 'v0' | 'hibernated';
const SIGNATURES: readonly (readonly [signature: string, kind: SwapKind])[] = [
  ['SWAPSPACE2', 'v1'],
  ['SWAP-SPACE', 'v0'],
  ['S1SUSPEND', 'hibernated'],
  ['S2SUSPEND', 'hibernated'],
  ['ULSUSPEND', 'hibernated'],
  ['LINHIB0001', 'hibernated'],
];
/** TOI_MAGIC_STRING: TuxOnIce's image header at byte 0, under an intact "SWAPSPACE2". */
const TUXONICE_MAGIC = [0xed, 0xc3, 0x02, 0xe9, 0x98, 0x56, 0xe5, 0x0c];
/** swap_header.info after 1024 boot bytes: u32 fields in the byte order of the machine that wrote them. */
const INFO = { version: 1024, lastPage: 1028, badPages: 1032, uuid: 1036, label: 1052 } as const;
const LABEL_BYTES = 16;
/** The bytes of the v1 header the decoder reads. */
export const SWAP_INFO_BYTES = INFO.label + LABEL_BYTES;
/** The only header version Linux has written since 2.2. */
export const SWAP_VERSION_1 = 1;

/** The kind of the 10 signature bytes at the end of a page, or undefined when they are none we know. */
export function parseSwapSignature(bytes: Uint8Array): SwapKind | undefined {
  return SIGNATURES.find(([signature]) => hasAscii(bytes, 0, signature))?.[1];
}

/** Whether a volume's first bytes carry TuxOnIce's image header. */
export function hasTuxOnIceMagic(head: Uint8Array): boolean {
  return head.length >= TUXONICE_MAGIC.length && TUXONICE_MAGIC.every((b, i) => head[i] === b);
}

/** A signature found at the end of a first page of `pageBytes`. */
export interface SwapSignature {
  readonly kind: SwapKind;
  readonly pageBytes: number;
  readonly magicOffsetBytes: number;
}

/** The first page size whose last bytes hold a signature of the table; `head` is the volume's first bytes. */
export async function findSwapSignature(reader: BlockReader, head: Uint8Array): Promise<SwapSignature | undefined> {
  for (const pageBytes of SWAP_PAGE_SIZES) {
    if (pageBytes > reader.sizeBytes) return undefined;
    const magicOffsetBytes = pageBytes - SIGNATURE_BYTES;
    const bytes = pageBytes <= head.length ? head.subarray(magicOffsetBytes, pageBytes) : await reader.read(magicOffsetBytes, SIGNATURE_BYTES);
    const kind = parseSwapSignature(bytes);
    if (kind === 'v1' && hasTuxOnIceMagic(head)) return { kind: 'hibernated', pageBytes, magicOffsetBytes };
    if (kind) return { kind, pageBytes, magicOffsetBytes };
  }
  return undefined;
}

/** The decoded v1 header info. */
export interface SwapInfo {
  readonly version: number;
  readonly lastPage: number;
  readonly badPages: number;
  readonly uuid: string;
  readonly label: string;
}

/** Decodes swap_header.info from the first SWAP_INFO_BYTES of the area, in the byte order that makes version 1. */
export function parseSwapInfo(hdr: Uint8Array): SwapInfo {
  const v = viewOf(hdr);
  const littleEndian = v.getUint32(INFO.version, true) === SWAP_VERSION_1;
  return {
    version: v.getUint32(INFO.version, littleEndian),
    lastPage: v.getUint32(INFO.lastPage, littleEndian),
    badPages: v.getUint32(INFO.badPages, littleEndian),
    uuid: uuidText(hdr, INFO.uuid),
    label: cString(hdr, INFO.label, LABEL_BYTES),
  };
}
