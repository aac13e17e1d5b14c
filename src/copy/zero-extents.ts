import type { Range } from '../disk/extent-set.js';
import type { BlockSource } from '../disk/types.js';
import { pushMerged } from './range-math.js';

/**
 * How far ahead one `extents` query asks. Large, because an NBD server answers block status in
 * one round trip whatever the length and may return only a prefix anyway; below 4 GiB, the
 * limit of a non-extended NBD request.
 */
const EXTENTS_QUERY_BYTES = 1024 * 1024 * 1024;

/**
 * Walks a source's extents forward and answers which parts of a range read as zero
 * (NBD_STATE_ZERO; a hole without the zero flag is not zero). Queries must move forward: each
 * `zerosIn` starts at or after the previous one's start.
 *
 * Extents come from an untrusted server: they are clipped to the query, and a reply that does
 * not start at the queried offset ends the reply there. A reply that says nothing about the
 * queried offset makes the whole query read as data, which is always correct.
 */
export class ZeroExtentCursor {
  readonly #source: BlockSource;
  readonly #queryBytes: number;
  #zeros: Range[] = [];
  #first = 0;
  #knownEndBytes = 0;

  constructor(source: BlockSource, queryBytes = EXTENTS_QUERY_BYTES) {
    this.#source = source;
    this.#queryBytes = queryBytes;
  }

  /** The sorted ranges inside [startBytes, endBytes) that the source says read as zero. */
  async zerosIn(startBytes: number, endBytes: number): Promise<Range[]> {
    endBytes = Math.min(endBytes, this.#source.sizeBytes);
    while (this.#first < this.#zeros.length && this.#zeros[this.#first]!.end <= startBytes) this.#first++;
    while (this.#knownEndBytes < endBytes) {
      await this.#fetch(Math.max(this.#knownEndBytes, startBytes));
    }
    const out: Range[] = [];
    for (let i = this.#first; i < this.#zeros.length; i++) {
      const z = this.#zeros[i]!;
      if (z.start >= endBytes) break;
      out.push({ start: Math.max(z.start, startBytes), end: Math.min(z.end, endBytes) });
    }
    return out;
  }

  async #fetch(fromBytes: number): Promise<void> {
    const limit = Math.min(fromBytes + this.#queryBytes, this.#source.sizeBytes);
    const extents = await this.#source.extents(fromBytes, limit - fromBytes);
    const zeros = this.#zeros.slice(this.#first);
    let pos = fromBytes;
    for (const e of extents) {
      if (e.offsetBytes > pos || pos >= limit) break;
      const end = Math.min(e.offsetBytes + e.lengthBytes, limit);
      if (end <= pos) continue;
      if (e.zero) pushMerged(zeros, pos, end);
      pos = end;
    }
    this.#zeros = zeros;
    this.#first = 0;
    this.#knownEndBytes = pos > fromBytes ? pos : limit;
  }
}
