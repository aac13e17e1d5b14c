/**
 * A file written front to back: bytes are gathered and written in large sequential writes, one
 * at a time, gaps between placements filled with zeros. At most one batch is being written while
 * the next one fills, so memory stays at about two batches.
 */
import type { FileHandle } from 'node:fs/promises';

/** Bytes gathered before they are written. */
const BATCH_BYTES = 1024 * 1024;

export class AppendFile {
  readonly #fh: FileHandle;
  readonly #onError: (err: unknown) => unknown;
  /** Where the gathered bytes start in the file. */
  #batchStartBytes: number;
  #batch: Uint8Array[] = [];
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

  /**
   * Appends `bytes` at `offsetBytes` (at or after the end; the gap reads as zeros). The bytes are
   * kept, not copied, until written: the caller must not change them. Waits when a batch is full.
   */
  async append(offsetBytes: number, bytes: Uint8Array): Promise<void> {
    if (offsetBytes < this.endBytes) throw new RangeError(`append at ${offsetBytes} is before the end ${this.endBytes}`);
    if (offsetBytes > this.endBytes) this.#gather(new Uint8Array(offsetBytes - this.endBytes));
    this.#gather(bytes);
    if (this.#batchBytes >= BATCH_BYTES) await this.#startWrite();
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

  #gather(bytes: Uint8Array): void {
    this.#batch.push(bytes);
    this.#batchBytes += bytes.length;
  }

  /** Waits for the previous batch, then starts writing the current one. */
  async #startWrite(): Promise<void> {
    await this.#writing;
    if (this.#batchBytes === 0) return;
    const buffers = this.#batch;
    const position = this.#batchStartBytes;
    this.#batch = [];
    this.#batchStartBytes += this.#batchBytes;
    this.#batchBytes = 0;
    const writing = this.#writeAll(buffers, position);
    writing.catch(() => {}); // seen by whoever awaits #writing next, not an unhandled rejection
    this.#writing = writing;
  }

  async #writeAll(buffers: Uint8Array[], position: number): Promise<void> {
    try {
      // writev takes at most IOV_MAX (1024) buffers; a batch of tiny compressed clusters can have more.
      for (let i = 0; i < buffers.length; ) {
        const group = buffers.slice(i, i + 1024);
        const want = group.reduce((n, b) => n + b.length, 0);
        const { bytesWritten } = await this.#fh.writev(group, position);
        if (bytesWritten !== want) {
          // A short writev: finish this group one buffer at a time.
          await this.#fh.write(Buffer.concat(group).subarray(bytesWritten), 0, want - bytesWritten, position + bytesWritten);
        }
        position += want;
        i += group.length;
      }
    } catch (err) {
      throw this.#onError(err);
    }
  }
}
