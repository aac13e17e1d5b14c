/**
 * The cluster allocation bitmap, $Bitmap's unnamed $DATA: one bit per cluster, bit i of byte n
 * for cluster 8n + i (least significant bit first), set when the cluster is in use (Linux-NTFS
 * "Files: $Bitmap"). Bits past the cluster count pad the last bytes: mkntfs and ntfsresize set
 * them, and they are ignored here. Pure code over chunks of the bitmap.
 */
import type { Range } from '../../disk/extent-set.js';

const ALL_FREE = 0x00;
const ALL_USED = 0xff;
const BITS_PER_BYTE = 8;

/** Collects the runs of clear bits (free clusters) of a bitmap read in order, chunk by chunk. */
export class FreeClusterCollector {
  readonly #runs: Range[] = [];
  #openStart = -1;
  #nextCluster = 0;

  constructor(readonly clusterCount: number) {}

  /** Adds the next chunk; it must start at the cluster where the previous one ended. */
  add(chunk: Uint8Array): void {
    const limit = this.clusterCount;
    let cluster = this.#nextCluster;
    for (let i = 0; i < chunk.length && cluster < limit; i++, cluster += BITS_PER_BYTE) {
      const byte = chunk[i]!;
      if (byte === ALL_FREE && cluster + BITS_PER_BYTE <= limit) {
        if (this.#openStart < 0) this.#openStart = cluster;
      } else if (byte === ALL_USED) {
        this.#close(cluster);
      } else {
        this.#addBits(byte, cluster, Math.min(BITS_PER_BYTE, limit - cluster));
      }
    }
    this.#nextCluster += chunk.length * BITS_PER_BYTE;
  }

  #addBits(byte: number, cluster: number, bits: number): void {
    for (let bit = 0; bit < bits; bit++) {
      if ((byte >> bit) & 1) this.#close(cluster + bit);
      else if (this.#openStart < 0) this.#openStart = cluster + bit;
    }
  }

  #close(cluster: number): void {
    if (this.#openStart >= 0) this.#runs.push({ start: this.#openStart, end: cluster });
    this.#openStart = -1;
  }

  /** The free runs in cluster numbers, [start, end), sorted; call once after the last chunk. */
  finish(): Range[] {
    this.#close(Math.min(this.#nextCluster, this.clusterCount));
    return this.#runs;
  }
}
