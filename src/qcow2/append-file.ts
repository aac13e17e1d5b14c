/**
 * A file written front to back: appended bytes are copied into one of two batch buffers and
 * written in large sequential writes, one at a time, gaps between placements filled with zeros.
 * One batch is being written while the other fills, so memory stays at two batches, and nothing
 * is allocated per append (the caller may reuse its bytes as soon as `append` returns).
 */
import type { FileHandle } from 'node:fs/promises';

/** Bytes gathered before they are written. */
const BATCH_BYTES = 1024 * 1024;

export class AppendFile {
  readonly #fh: FileHandle;
  readonly #onError: (err: unknown) => unknown;
  /** The batch filling now; the other one may be being written. */
  #batch = Buffer.allocUnsafe(BATCH_BYTES);
  #spare = Buffer.allocUnsafe(BATCH_BYTES);
  /** Where the batch starts in the file. */
  #batchStartBytes: number;
  #batchBytes = 0;
  #writing: Promise<void> = Promise.resolve();

  constructor(fh: FileHandle, startBytes: number, onError: (err: unknown) => unknown) {
    this.#fh = fh;
    this.#batchStartBytes = startBytes;
    this.#onError = onError;
  }

  /** The offset the next appended byte lands at. */
  get endBytes(): number {
    return this.#batchStartBytes + this.#batchBytes;
  }

  /** Appends `bytes` at `offsetBytes` (at or after the end; the gap reads as zeros). Waits when a batch is full. */
  async append(offsetBytes: number, bytes: Uint8Array): Promise<void> {
    if (offsetBytes < this.endBytes) throw new RangeError(`append at ${offsetBytes} is before the end ${this.endBytes}`);
    for (let gap = offsetBytes - this.endBytes; gap > 0; ) {
      const n = Math.min(gap, BATCH_BYTES - this.#batchBytes);
      this.#batch.fill(0, this.#batchBytes, this.#batchBytes + n);
      gap -= n;
      await this.#filled(n);
    }
    for (let at = 0; at < bytes.length; ) {
      const n = Math.min(bytes.length - at, BATCH_BYTES - this.#batchBytes);
      this.#batch.set(bytes.subarray(at, at + n), this.#batchBytes);
      at += n;
      await this.#filled(n);
    }
  }

  /** Writes everything gathered and waits for it. */
  async drain(): Promise<void> {
    await this.#startWrite();
    await this.#writing;
  }

  /** Writes `bytes` at `offsetBytes` now (for the header and L1 table, outside the appended range). */
  async writeAt(offsetBytes: number, bytes: Uint8Array): Promise<void> {
    try {
      await this.#fh.write(bytes, 0, bytes.length, offsetBytes);
    } catch (err) {
      throw this.#onError(err);
    }
  }

  async #filled(bytes: number): Promise<void> {
    this.#batchBytes += bytes;
    if (this.#batchBytes === BATCH_BYTES) await this.#startWrite();
  }

  /** Waits for the previous batch, then starts writing the current one and fills the other. */
  async #startWrite(): Promise<void> {
    await this.#writing;
    if (this.#batchBytes === 0) return;
    const batch = this.#batch.subarray(0, this.#batchBytes);
    const writing = this.#writeAll(batch, this.#batchStartBytes);
    writing.catch(() => {}); // seen by whoever awaits #writing next, not an unhandled rejection
    this.#writing = writing;
    this.#batchStartBytes += this.#batchBytes;
    this.#batchBytes = 0;
    [this.#batch, this.#spare] = [this.#spare, this.#batch];
  }

  async #writeAll(bytes: Buffer, position: number): Promise<void> {
    try {
      for (let at = 0; at < bytes.length; ) {
        const { bytesWritten } = await this.#fh.write(bytes, at, bytes.length - at, position + at);
        if (bytesWritten === 0) throw new Error(`writing at ${position + at} wrote nothing`);
        at += bytesWritten;
      }
    } catch (err) {
      throw this.#onError(err);
    }
  }
}
