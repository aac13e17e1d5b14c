/**
 * Where everything goes in a compressed qcow2 image written front to back (qemu
 * docs/interop/qcow2.txt). Cluster 0 holds the header, the L1 table follows, then the guest
 * clusters in the order they are placed: compressed ones packed byte after byte (qemu lets one
 * spill into the next host cluster and share a sector with the next), uncompressed ones on a
 * cluster boundary. At the end come the L2 tables, the refcount blocks and the refcount table.
 * The map keeps the L2 tables and the refcount of every host cluster in memory: 8 bytes per
 * guest cluster of data and 2 bytes per host cluster. No I/O here.
 */
import {
  MAX_REFCOUNT,
  REFCOUNT_BYTES,
  SECTOR_BYTES,
  compressedL2Entry,
  encodeHeader,
  l1Entry,
  l1EntriesFor,
  refcountsPerBlock,
  standardL2Entry,
  type CompressionType,
} from './format.js';

/** Bytes to write at an offset. */
export interface Placed {
  readonly offsetBytes: number;
  readonly bytes: Uint8Array;
}

/** The finished image's metadata: `tail` goes at the end, `head` (header and L1) at offset 0. */
export interface ImageMetadata {
  readonly tail: Placed[];
  readonly head: Placed[];
  readonly fileSizeBytes: number;
}

export class ImageMap {
  readonly clusterBytes: number;
  readonly #clusterBits: number;
  readonly #virtualSizeBytes: number;
  readonly #compressionType: CompressionType;
  readonly #l1Entries: number;
  readonly #l2Tables = new Map<number, DataView>();
  #refcounts: Uint16Array;
  #endBytes: number;

  constructor(virtualSizeBytes: number, clusterBits: number, compressionType: CompressionType) {
    this.clusterBytes = 2 ** clusterBits;
    this.#clusterBits = clusterBits;
    this.#virtualSizeBytes = virtualSizeBytes;
    this.#compressionType = compressionType;
    this.#l1Entries = l1EntriesFor(virtualSizeBytes, clusterBits);
    const l1Clusters = Math.max(1, Math.ceil((this.#l1Entries * 8) / this.clusterBytes));
    this.#refcounts = new Uint16Array(1024);
    this.#endBytes = (1 + l1Clusters) * this.clusterBytes;
    this.#count(0, this.#endBytes);
  }

  /** Where the next byte of the file goes: every placement starts at or after it. */
  get endBytes(): number {
    return this.#endBytes;
  }

  /** Whether the guest cluster already has data (a compressed cluster cannot be rewritten). */
  isMapped(guestCluster: number): boolean {
    const view = this.#entryView(guestCluster, false);
    return view !== undefined && view.getBigUint64(this.#entryOffset(guestCluster)) !== 0n;
  }

  /** Places `lengthBytes` of compressed data for `guestCluster` at the end; returns its offset. */
  placeCompressed(guestCluster: number, lengthBytes: number): number {
    let at = this.#endBytes;
    // A host cluster shared by so many tiny compressed clusters that its refcount would overflow: skip it.
    if (at % this.clusterBytes !== 0 && this.#refcountAt(Math.floor(at / this.clusterBytes)) >= MAX_REFCOUNT) at = this.#alignUp(at);
    this.#setEntry(guestCluster, compressedL2Entry(at, lengthBytes, this.#clusterBits));
    this.#count(at, at + lengthBytes);
    this.#endBytes = at + lengthBytes;
    return at;
  }

  /** Places an uncompressed cluster on the next cluster boundary; returns its offset. */
  placeUncompressed(guestCluster: number): number {
    const at = this.#alignUp(this.#endBytes);
    this.#setEntry(guestCluster, standardL2Entry(at));
    this.#count(at, at + this.clusterBytes);
    this.#endBytes = at + this.clusterBytes;
    return at;
  }

  /** Lays out the L2 tables and refcount structures after the data and encodes every table. */
  finish(): ImageMetadata {
    const cs = this.clusterBytes;
    const dataClusters = this.#alignUp(this.#endBytes) / cs;
    const l2Indexes = [...this.#l2Tables.keys()].sort((a, b) => a - b);
    const perBlock = refcountsPerBlock(this.#clusterBits);
    // The refcount structures count themselves: grow them until they cover everything.
    let blocks = 1;
    let tableClusters = 1;
    for (;;) {
      const total = dataClusters + l2Indexes.length + blocks + tableClusters;
      const needBlocks = Math.ceil(total / perBlock);
      const needTable = Math.ceil((needBlocks * 8) / cs);
      if (needBlocks === blocks && needTable === tableClusters) break;
      blocks = Math.max(blocks, needBlocks);
      tableClusters = Math.max(tableClusters, needTable);
    }
    const l2Start = dataClusters * cs;
    const blocksStart = l2Start + l2Indexes.length * cs;
    const tableStart = blocksStart + blocks * cs;
    const fileSizeBytes = tableStart + tableClusters * cs;
    this.#count(l2Start, fileSizeBytes);

    const l1 = new DataView(new ArrayBuffer(this.#l1Entries * 8));
    const tail: Placed[] = l2Indexes.map((index, i) => {
      l1.setBigUint64(index * 8, l1Entry(l2Start + i * cs));
      const view = this.#l2Tables.get(index)!;
      return { offsetBytes: l2Start + i * cs, bytes: new Uint8Array(view.buffer, view.byteOffset, view.byteLength) };
    });
    tail.push({ offsetBytes: blocksStart, bytes: this.#encodeRefcountBlocks(blocks, fileSizeBytes / cs) });
    const table = new DataView(new ArrayBuffer(tableClusters * cs));
    for (let b = 0; b < blocks; b++) table.setBigUint64(b * 8, BigInt(blocksStart + b * cs));
    tail.push({ offsetBytes: tableStart, bytes: new Uint8Array(table.buffer) });

    const header = encodeHeader({
      clusterBits: this.#clusterBits,
      // qemu counts a disk in 512-byte sectors; qemu-img create rounds a size up to one.
      virtualSizeBytes: Math.ceil(this.#virtualSizeBytes / SECTOR_BYTES) * SECTOR_BYTES,
      l1Entries: this.#l1Entries,
      l1TableOffsetBytes: cs,
      refcountTableOffsetBytes: tableStart,
      refcountTableClusters: tableClusters,
      compressionType: this.#compressionType,
    });
    const head = [
      { offsetBytes: 0, bytes: header },
      { offsetBytes: cs, bytes: new Uint8Array(l1.buffer) },
    ];
    return { tail, head, fileSizeBytes };
  }

  #encodeRefcountBlocks(blocks: number, clusters: number): Uint8Array {
    const view = new DataView(new ArrayBuffer(blocks * this.clusterBytes));
    for (let c = 0; c < clusters; c++) view.setUint16(c * REFCOUNT_BYTES, this.#refcountAt(c));
    return new Uint8Array(view.buffer);
  }

  #setEntry(guestCluster: number, entry: bigint): void {
    if (guestCluster < 0 || guestCluster * this.clusterBytes >= this.#virtualSizeBytes) {
      throw new RangeError(`guest cluster ${guestCluster} is outside a ${this.#virtualSizeBytes}-byte image`);
    }
    this.#entryView(guestCluster, true)!.setBigUint64(this.#entryOffset(guestCluster), entry);
  }

  #entryView(guestCluster: number, create: boolean): DataView | undefined {
    const index = Math.floor(guestCluster / (this.clusterBytes / 8));
    let view = this.#l2Tables.get(index);
    if (!view && create) {
      view = new DataView(new ArrayBuffer(this.clusterBytes));
      this.#l2Tables.set(index, view);
    }
    return view;
  }

  #entryOffset(guestCluster: number): number {
    return (guestCluster % (this.clusterBytes / 8)) * 8;
  }

  /** Adds one reference to every host cluster that [start, end) touches. */
  #count(startBytes: number, endBytes: number): void {
    const last = Math.floor((endBytes - 1) / this.clusterBytes);
    if (last >= this.#refcounts.length) {
      const grown = new Uint16Array(Math.max(last + 1, this.#refcounts.length * 2));
      grown.set(this.#refcounts);
      this.#refcounts = grown;
    }
    for (let c = Math.floor(startBytes / this.clusterBytes); c <= last; c++) this.#refcounts[c]!++;
  }

  #refcountAt(cluster: number): number {
    return cluster < this.#refcounts.length ? this.#refcounts[cluster]! : 0;
  }

  #alignUp(bytes: number): number {
    return Math.ceil(bytes / this.clusterBytes) * this.clusterBytes;
  }
}
