/**
 * Disk writeback overlapped with the copy. A copy of a few GiB into the page cache takes a couple
 * of seconds; left to the end, the fsync that makes the output durable (invariant 6) then waits
 * as long again for the disk, with nothing else to do. Starting an fdatasync of the output every
 * `everyBytes` written lets the disk work while the copy still reads, so the final fsync finds
 * little left. Node has no sync_file_range (which would start the writeback without waiting), so
 * this is fdatasync on libuv's pool, at most one at a time: the pool has room (the `sparsify`
 * binary sizes it to 16) and the copy's own reads and writes never queue behind it for long.
 *
 * An error of a background sync is kept and thrown by {@link Writeback.settle}: Linux reports a
 * writeback error to one fsync only, so the final fsync could succeed after data was lost.
 */

/**
 * Bytes written between two background syncs: small against a copy of GiBs (the disk starts
 * within the first quarter second), large enough that a sync is not started per chunk.
 */
export const DEFAULT_WRITEBACK_EVERY_BYTES = 256 * 1024 * 1024;

export class Writeback {
  readonly #sync: () => Promise<void>;
  readonly #everyBytes: number;
  #pendingBytes = 0;
  #running: Promise<void> | undefined;
  #error: unknown;
  #failed = false;
  #syncs = 0;

  /** `sync` makes every byte written before it was called durable (fdatasync). */
  constructor(sync: () => Promise<void>, everyBytes = DEFAULT_WRITEBACK_EVERY_BYTES) {
    if (!Number.isSafeInteger(everyBytes) || everyBytes <= 0) throw new RangeError(`everyBytes must be a positive integer, not ${everyBytes}`);
    this.#sync = sync;
    this.#everyBytes = everyBytes;
  }

  /** Background syncs started so far (for tests and the debug log). */
  get syncs(): number {
    return this.#syncs;
  }

  /** Counts `bytes` just written; starts a sync when enough piled up and none is running. */
  wrote(bytes: number): void {
    this.#pendingBytes += bytes;
    if (this.#running || this.#failed || this.#pendingBytes < this.#everyBytes) return;
    this.#pendingBytes = 0;
    this.#syncs++;
    const running = this.#sync().then(
      () => {},
      (err: unknown) => {
        if (!this.#failed) {
          this.#failed = true;
          this.#error = err;
        }
      },
    );
    this.#running = running.finally(() => {
      this.#running = undefined;
    });
  }

  /** Waits for the running sync, then throws the first error any background sync met. */
  async settle(): Promise<void> {
    while (this.#running) await this.#running;
    if (this.#failed) throw this.#error;
  }
}
