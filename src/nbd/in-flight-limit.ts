/**
 * Admission control for requests in flight: at most `maxRequests` requests and `maxBytes`
 * payload bytes, admitted in FIFO order so that a large request is never starved. A request
 * larger than `maxBytes` is admitted alone.
 */
export class InFlightLimit {
  #requests = 0;
  #bytes = 0;
  #failure: Error | undefined;
  readonly #waiters: Array<{ bytes: number; resolve: () => void; reject: (err: Error) => void }> = [];
  readonly #idleWaiters: Array<() => void> = [];

  constructor(
    readonly maxRequests: number,
    readonly maxBytes: number,
  ) {}

  /** Requests admitted and not yet released. */
  get active(): number {
    return this.#requests;
  }

  /** Waits until a request of `bytes` payload bytes may be sent. */
  acquire(bytes: number): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#waiters.length === 0 && this.#fits(bytes)) {
      this.#admit(bytes);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.#waiters.push({ bytes, resolve, reject }));
  }

  /** Gives back what acquire(bytes) took and admits whoever now fits. */
  release(bytes: number): void {
    this.#requests -= 1;
    this.#bytes -= bytes;
    for (let next = this.#waiters[0]; next && this.#fits(next.bytes); next = this.#waiters[0]) {
      this.#waiters.shift();
      this.#admit(next.bytes);
      next.resolve();
    }
    if (this.#requests === 0 && this.#waiters.length === 0) this.#idleWaiters.splice(0).forEach((f) => f());
  }

  /** Rejects every waiting and future acquire with `err`. */
  fail(err: Error): void {
    this.#failure ??= err;
    for (const w of this.#waiters.splice(0)) w.reject(err);
    if (this.#requests === 0) this.#idleWaiters.splice(0).forEach((f) => f());
  }

  /** Resolves when nothing is admitted or waiting. */
  idle(): Promise<void> {
    if (this.#requests === 0 && this.#waiters.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #fits(bytes: number): boolean {
    if (this.#requests === 0) return true;
    return this.#requests < this.maxRequests && this.#bytes + bytes <= this.maxBytes;
  }

  #admit(bytes: number): void {
    this.#requests += 1;
    this.#bytes += bytes;
  }
}
