import type { FileHandle } from 'node:fs/promises';
import { viewOf } from '../binary/bytes.js';
import type { BlockSource, Extent } from '../disk/types.js';
import { isSparsifyError } from '../errors.js';
import { HEADER_PROBE_BYTES, parseQcow2Extensions, parseQcow2Header, type Qcow2Header } from '../qemu/qcow2-header.js';
import { directReadRefusal, l2CoverageBytes, MAPPING_ENTRY_BYTES, parseL1Entry, parseL2Entry, type ClusterKind } from '../qcow2/mapping.js';
import { once } from '../util/async-stack.js';
import type { CopySource } from './copy-source.js';
import { preadFully } from './file-reads.js';

/** qemu's limit on the L1 table (QCOW_MAX_L1_SIZE): a larger one is left to qemu. */
const MAX_L1_BYTES = 32 * 1024 * 1024;
/** L2 tables kept in memory; the copier reads forward, a few MiB at a time. */
const L2_CACHE_BYTES = 8 * 1024 * 1024;
const MIN_L2_CACHED = 4;

/** The source, or why the image is left to qemu. */
export type Qcow2FileSourceResult = { readonly ok: true; readonly source: CopySource } | { readonly ok: false; readonly reason: string };

/** A run of guest bytes that read the same way: zeros, one host run of the file, or through qemu. */
interface Piece {
  readonly kind: ClusterKind;
  readonly startBytes: number;
  endBytes: number;
  /** Where `startBytes` lies in the file, for 'data'. */
  readonly hostBytes: number;
}

/**
 * A qcow2 input read through its own L1/L2 tables with pread on the file, as `qemu-img convert`
 * reads it, instead of through the NBD export: the export costs three more copies of every
 * byte (the daemon's pread, the socket send, our receive), which made a qcow2 input the copier's
 * slowest path. The extents come from the same tables (unallocated and "all zeros" clusters read
 * as zero) without a round trip. Compressed clusters and any entry this reader does not
 * interpret are read through `device`, so qemu stays the judge of everything unusual; images it
 * cannot read at all (see `directReadRefusal`) are refused here and read through `device` whole.
 *
 * Reading the file beside the daemon is safe: the daemon holds it read-only under qemu's shared
 * lock, so no qemu writer changes the tables during the copy. Closing the source closes `fh`.
 */
export async function openQcow2FileSource(
  fh: FileHandle,
  path: string,
  fileSizeBytes: number,
  device: BlockSource,
): Promise<Qcow2FileSourceResult> {
  const probe = Buffer.alloc(Math.min(fileSizeBytes, HEADER_PROBE_BYTES));
  await preadFully(fh, path, probe, 0);
  let header: Qcow2Header;
  try {
    header = parseQcow2Header(probe);
    const cluster0 = Buffer.alloc(Math.min(fileSizeBytes, header.clusterSizeBytes));
    await preadFully(fh, path, cluster0, 0);
    const refusal = directReadRefusal(header, parseQcow2Extensions(cluster0, header), fileSizeBytes);
    if (refusal) return { ok: false, reason: refusal };
  } catch (err) {
    if (isSparsifyError(err, 'BAD_IMAGE')) return { ok: false, reason: err.message };
    throw err;
  }
  if (header.virtualSizeBytes !== device.sizeBytes) {
    return { ok: false, reason: `its virtual size ${header.virtualSizeBytes} differs from the export's ${device.sizeBytes}` };
  }
  const l1Bytes = header.l1Entries * MAPPING_ENTRY_BYTES;
  if (l1Bytes > MAX_L1_BYTES) return { ok: false, reason: `its L1 table of ${l1Bytes} bytes is larger than qemu allows` };
  // Only the entries the virtual size needs (a shrunk image keeps a longer table).
  const l1 = Buffer.alloc(Math.ceil(header.virtualSizeBytes / l2CoverageBytes(header.clusterBits)) * MAPPING_ENTRY_BYTES);
  await preadFully(fh, path, l1, header.l1TableOffsetBytes);
  return { ok: true, source: new Qcow2FileSource(fh, path, fileSizeBytes, header, viewOf(l1), device) };
}

class Qcow2FileSource implements CopySource {
  readonly sizeBytes: number;
  readonly canExtents = true;
  readonly #fh: FileHandle;
  readonly #path: string;
  readonly #fileSizeBytes: number;
  readonly #header: Qcow2Header;
  readonly #l1: DataView;
  readonly #device: BlockSource;
  readonly #l2PerTable: number;
  /** L2 tables by L1 index, least recently used first; undefined: the L1 entry is left to qemu. */
  readonly #l2Cache = new Map<number, Promise<DataView | undefined>>();
  readonly #l2CacheLimit: number;
  readonly #close: () => Promise<void>;

  constructor(fh: FileHandle, path: string, fileSizeBytes: number, header: Qcow2Header, l1: DataView, device: BlockSource) {
    this.sizeBytes = header.virtualSizeBytes;
    this.#fh = fh;
    this.#path = path;
    this.#fileSizeBytes = fileSizeBytes;
    this.#header = header;
    this.#l1 = l1;
    this.#device = device;
    this.#l2PerTable = header.clusterSizeBytes / MAPPING_ENTRY_BYTES;
    this.#l2CacheLimit = Math.max(MIN_L2_CACHED, Math.floor(L2_CACHE_BYTES / header.clusterSizeBytes));
    this.#close = once(() => fh.close());
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    const dest = Buffer.allocUnsafe(lengthBytes);
    await this.readInto(offsetBytes, dest);
    return dest;
  }

  async readInto(offsetBytes: number, dest: Uint8Array): Promise<void> {
    const endBytes = offsetBytes + dest.byteLength;
    if (offsetBytes < 0 || endBytes > this.sizeBytes) {
      throw new RangeError(`read ${offsetBytes}+${dest.byteLength} is outside the ${this.sizeBytes}-byte ${this.#path}`);
    }
    const pieces = await this.#pieces(offsetBytes, endBytes);
    await Promise.all(
      pieces.map((p) => {
        const part = dest.subarray(p.startBytes - offsetBytes, p.endBytes - offsetBytes);
        if (p.kind === 'zero') return part.fill(0);
        if (p.kind === 'data') return preadFully(this.#fh, this.#path, part, p.hostBytes);
        return this.#readThroughQemu(p.startBytes, part);
      }),
    );
  }

  /** Extents up to the end of one L2 table's coverage (the caller asks again for the rest). */
  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    const coverage = l2CoverageBytes(this.#header.clusterBits);
    const endBytes = Math.min(offsetBytes + lengthBytes, (Math.floor(offsetBytes / coverage) + 1) * coverage, this.sizeBytes);
    if (endBytes <= offsetBytes) return [];
    const extents: Extent[] = [];
    for (const p of await this.#pieces(offsetBytes, endBytes)) {
      const zero = p.kind === 'zero';
      const last = extents[extents.length - 1];
      if (last && last.zero === zero) extents[extents.length - 1] = { ...last, lengthBytes: p.endBytes - last.offsetBytes };
      else extents.push({ offsetBytes: p.startBytes, lengthBytes: p.endBytes - p.startBytes, zero, hole: zero });
    }
    return extents;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.#close();
  }

  async #readThroughQemu(offsetBytes: number, dest: Uint8Array): Promise<void> {
    if (this.#device.readInto) return this.#device.readInto(offsetBytes, dest);
    dest.set(await this.#device.read(offsetBytes, dest.byteLength));
  }

  /** [start, end) cut into maximal pieces of one kind; 'data' pieces are contiguous in the file. */
  async #pieces(startBytes: number, endBytes: number): Promise<Piece[]> {
    const cs = this.#header.clusterSizeBytes;
    const pieces: Piece[] = [];
    let tableIndex = -1;
    let table: DataView | null | undefined;
    for (let at = startBytes; at < endBytes; ) {
      const cluster = Math.floor(at / cs);
      const next = Math.min((cluster + 1) * cs, endBytes);
      if (Math.floor(cluster / this.#l2PerTable) !== tableIndex) {
        tableIndex = Math.floor(cluster / this.#l2PerTable);
        table = await this.#l2Table(tableIndex);
      }
      const { kind, hostBytes } = this.#mapping(table, cluster, at - cluster * cs);
      const last = pieces[pieces.length - 1];
      const joins = last && last.kind === kind && (kind !== 'data' || last.hostBytes + (at - last.startBytes) === hostBytes);
      if (joins) last.endBytes = next;
      else pieces.push({ kind, startBytes: at, endBytes: next, hostBytes });
      at = next;
    }
    return pieces;
  }

  /** How guest `cluster` reads, and where byte `withinBytes` of it is in the file for 'data'. */
  #mapping(table: DataView | null | undefined, cluster: number, withinBytes: number): { kind: ClusterKind; hostBytes: number } {
    if (table === null) return { kind: 'zero', hostBytes: 0 };
    if (table === undefined) return { kind: 'other', hostBytes: 0 };
    const entry = parseL2Entry(table, (cluster % this.#l2PerTable) * MAPPING_ENTRY_BYTES, this.#header, this.#fileSizeBytes);
    return { kind: entry.kind, hostBytes: entry.kind === 'data' ? entry.hostOffsetBytes + withinBytes : 0 };
  }

  /** The L2 table of L1 entry `index`; null: none (unallocated), undefined: an entry left to qemu. */
  async #l2Table(index: number): Promise<DataView | null | undefined> {
    const offsetBytes = parseL1Entry(this.#l1, index * MAPPING_ENTRY_BYTES, this.#header.clusterSizeBytes, this.#fileSizeBytes);
    if (offsetBytes === 0) return null;
    if (offsetBytes === undefined) return undefined;
    let table = this.#l2Cache.get(index);
    if (table) {
      this.#l2Cache.delete(index); // re-inserted below: most recently used last
    } else {
      const bytes = Buffer.alloc(this.#header.clusterSizeBytes);
      table = preadFully(this.#fh, this.#path, bytes, offsetBytes).then(() => viewOf(bytes));
      if (this.#l2Cache.size >= this.#l2CacheLimit) this.#l2Cache.delete(this.#l2Cache.keys().next().value!);
    }
    this.#l2Cache.set(index, table);
    return table;
  }
}
