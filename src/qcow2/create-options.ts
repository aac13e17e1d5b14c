/**
 * Whether sparsify's qcow2 writers (compressed-sink.ts, plain-sink.ts) can make the image that
 * `qemu-img create -f qcow2 -o …` would, and with which cluster size and compression type. Options it does not model (backing
 * files, encryption, refcount_bits, extended_l2, preallocation, compat=0.10, …) are left to qemu.
 */
import { MAX_CLUSTER_BITS, MIN_CLUSTER_BITS, type CompressionType } from './format.js';

/** The image the writer makes. */
export interface CompressedImageOptions {
  readonly clusterBits: number;
  readonly compressionType: CompressionType;
}

/** The writer's choice: its options, or why qemu must make the image instead. */
export type WriterChoice =
  | { readonly use: 'writer'; readonly options: CompressedImageOptions }
  | { readonly use: 'qemu'; readonly reason: string };

/** qemu-img's defaults: 64 KiB clusters, zlib. */
const DEFAULT_CLUSTER_BITS = 16;
const SIZE_SUFFIX_SHIFT: Record<string, number> = { '': 0, b: 0, k: 10, m: 20, g: 30, t: 40 };

/** Decides from the -o string (as given to sparsify, qemu-img create syntax: `key=value,…`). */
export function chooseCompressedWriter(createOptions: string | undefined, host: { readonly zstdAvailable: boolean }): WriterChoice {
  let clusterBits = DEFAULT_CLUSTER_BITS;
  let compressionType: CompressionType = 'zlib';
  for (const [key, value] of splitOptions(createOptions ?? '')) {
    if (key === 'cluster_size') {
      const bits = clusterBitsOf(value);
      if (bits === undefined) return { use: 'qemu', reason: `cluster_size=${value} is left to qemu-img to judge` };
      clusterBits = bits;
    } else if (key === 'compression_type' && (value === 'zlib' || value === 'zstd')) {
      compressionType = value;
    } else if (key === 'compat' && (value === '1.1' || value === 'v3')) {
      // The writer makes version 3 images.
    } else {
      return { use: 'qemu', reason: `-o ${key}${value === undefined ? '' : `=${value}`} is made by qemu-img` };
    }
  }
  if (compressionType === 'zstd' && !host.zstdAvailable) return { use: 'qemu', reason: 'the zstd binding cannot be loaded here' };
  return { use: 'writer', options: { clusterBits, compressionType } };
}

/** `a=1,b=2` with qemu's `,,` for a literal comma; a key without `=` has no value. */
function splitOptions(text: string): Array<[string, string | undefined]> {
  const out: Array<[string, string | undefined]> = [];
  for (const part of text.replaceAll(',,', '\0').split(',')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const unescape = (s: string): string => s.replaceAll('\0', ',');
    out.push(eq < 0 ? [unescape(part), undefined] : [unescape(part.slice(0, eq)), unescape(part.slice(eq + 1))]);
  }
  return out;
}

/** log2 of a cluster size qemu accepts (a power of two, 512 B – 2 MiB), or undefined. */
function clusterBitsOf(value: string | undefined): number | undefined {
  const m = /^(\d+)([bkmgt]?)$/i.exec(value ?? '');
  if (!m) return undefined;
  const bytes = Number(m[1]) * 2 ** SIZE_SUFFIX_SHIFT[m[2]!.toLowerCase()]!;
  const bits = Math.log2(bytes);
  return Number.isInteger(bits) && bits >= MIN_CLUSTER_BITS && bits <= MAX_CLUSTER_BITS ? bits : undefined;
}
