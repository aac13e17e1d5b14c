/**
 * A tiny AsyncDisposableStack (Node 20 has none). Resources are released in reverse order; a
 * failure while releasing is reported to `onError` and never hides the first error.
 */
export class AsyncStack implements AsyncDisposable {
  #entries: Array<() => Promise<void> | void> = [];
  #disposed = false;

  constructor(private readonly onError: (err: unknown) => void = defaultOnError) {}

  /** Registers a disposable resource and returns it. */
  use<T extends AsyncDisposable | Disposable | null | undefined>(resource: T): T {
    if (resource == null) return resource;
    const r = resource as Partial<AsyncDisposable & Disposable>;
    const fn = r[Symbol.asyncDispose] ?? r[Symbol.dispose];
    if (typeof fn !== 'function') throw new TypeError('AsyncStack.use: value is not disposable');
    this.#push(() => fn.call(resource));
    return resource;
  }

  /** Registers a release callback. */
  defer(fn: () => Promise<void> | void): void {
    this.#push(fn);
  }

  /**
   * After the stack was released, nothing may join it unnoticed (it would never be released):
   * the late entry is released at once and the caller gets an error.
   */
  #push(fn: () => Promise<void> | void): void {
    if (!this.#disposed) {
      this.#entries.push(fn);
      return;
    }
    void (async () => fn())().catch((err: unknown) => this.onError(err));
    throw new Error('AsyncStack: a resource was registered after the stack was released; it was released at once');
  }

  /** Moves every entry into a new stack and leaves this one empty (ownership transfer). */
  move(): AsyncStack {
    const next = new AsyncStack(this.onError);
    next.#entries = this.#entries;
    this.#entries = [];
    return next;
  }

  /** Releases everything in reverse order; idempotent. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const entries = this.#entries.reverse();
    this.#entries = [];
    for (const fn of entries) {
      try {
        await fn();
      } catch (err) {
        this.onError(err);
      }
    }
  }
}

function defaultOnError(err: unknown): void {
  process.emitWarning(`cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
}

/** Wraps a release function so that it runs at most once and every caller awaits the same run. */
export function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}
