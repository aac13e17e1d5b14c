/**
 * The bytes received from a socket and not parsed yet, kept as the chunks the socket gave us so
 * that nothing is copied until a reader asks for it (and then at most once).
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  /** Bytes of #chunks[0] already consumed. */
  #headOffset = 0;
  #length = 0;

  /** Bytes available. */
  get length(): number {
    return this.#length;
  }

  /** Appends a chunk received from the socket; the queue keeps a reference, not a copy. */
  push(chunk: Buffer): void {
    if (chunk.byteLength === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.byteLength;
  }

  /** The big-endian uint32 at the front, without consuming it; the caller checks length ≥ 4. */
  peekUint32(): number {
    const head = this.#chunks[0];
    if (head && head.byteLength - this.#headOffset >= 4) return head.readUInt32BE(this.#headOffset);
    return this.#peekBytes(4).readUInt32BE(0);
  }

  /** Removes and returns `n` bytes: a view into one chunk when possible, else one copy. */
  take(n: number): Buffer {
    if (n > this.#length) throw new RangeError(`ByteQueue.take(${n}) with ${this.#length} bytes queued`);
    const head = this.#chunks[0];
    if (head && head.byteLength - this.#headOffset >= n) {
      const out = head.subarray(this.#headOffset, this.#headOffset + n);
      this.#consume(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyInto(out, 0, n);
    return out;
  }

  /** Moves up to `n` bytes into `dest` at `destOffset`; returns how many were moved. */
  copyInto(dest: Uint8Array, destOffset: number, n: number): number {
    let moved = 0;
    while (moved < n && this.#length > 0) {
      const head = this.#chunks[0] as Buffer;
      const step = Math.min(n - moved, head.byteLength - this.#headOffset);
      dest.set(head.subarray(this.#headOffset, this.#headOffset + step), destOffset + moved);
      this.#consume(step);
      moved += step;
    }
    return moved;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let dropped = 0;
    while (dropped < n && this.#length > 0) {
      const head = this.#chunks[0] as Buffer;
      const step = Math.min(n - dropped, head.byteLength - this.#headOffset);
      this.#consume(step);
      dropped += step;
    }
    return dropped;
  }

  /**
   * Replaces the newest chunk by a copy of its bytes not consumed yet: call it before the memory
   * behind a chunk pushed as a borrowed view is reused.
   */
  ownNewest(): void {
    const last = this.#chunks.length - 1;
    if (last < 0) return;
    const from = last === 0 ? this.#headOffset : 0;
    this.#chunks[last] = Buffer.from((this.#chunks[last] as Buffer).subarray(from));
    if (last === 0) this.#headOffset = 0;
  }

  /** Forgets everything queued. */
  clear(): void {
    this.#chunks = [];
    this.#headOffset = 0;
    this.#length = 0;
  }

  #peekBytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let offset = this.#headOffset;
    for (const chunk of this.#chunks) {
      const step = Math.min(n - filled, chunk.byteLength - offset);
      chunk.copy(out, filled, offset, offset + step);
      filled += step;
      offset = 0;
      if (filled === n) break;
    }
    return out;
  }

  /** Consumes `n` bytes that lie within the head chunk. */
  #consume(n: number): void {
    this.#headOffset += n;
    this.#length -= n;
    const head = this.#chunks[0] as Buffer;
    if (this.#headOffset === head.byteLength) {
      this.#chunks.shift();
      this.#headOffset = 0;
    }
  }
}
