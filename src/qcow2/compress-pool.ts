/**
 * A small pool of worker threads that compress clusters: one per core, each with one job at a
 * time, the rest queued here. A job runs in a slot, two shared buffers of about `jobBytes` (the
 * data in, the stored clusters out), held from the moment the job starts until its result is
 * released: a job allocates nothing that either thread must collect, and the result is read
 * where the worker wrote it. Jobs wait for a free thread and a free slot.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SparsifyError } from '../errors.js';
import { outputSlackBytes, type CompressAnswer, type CompressJob, type CompressSlot, type CompressWorkerSetup } from './compress-job.js';

/** A thread holds one job at a time and allocates little: small heaps are plenty. */
const WORKER_HEAP_LIMITS = { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 16 };
/** The worker's own file, beside this one in src/ and in dist/. */
const WORKER_URL = new URL('./compress-worker.js', import.meta.url);

/**
 * A compressed job: per cluster 0 (zero), -1 (to be stored as it is) or the length of its
 * compressed part of `out`; the parts follow one another. `out` stays valid until `release`,
 * which hands the slot to the next job (after the last read of `out`; a second call does nothing).
 */
export interface CompressResult {
  readonly lengths: Int32Array;
  readonly out: Uint8Array;
  release(): void;
}

interface Pending {
  readonly data: Uint8Array;
  readonly resolve: (r: CompressResult) => void;
  readonly reject: (err: unknown) => void;
}

interface Slot {
  readonly index: number;
  readonly input: Uint8Array;
  readonly output: Uint8Array;
}

/** Compresses jobs on worker threads; dispose terminates them. */
export class CompressPool implements AsyncDisposable {
  /** The largest job: `compress` takes at most this many bytes. */
  readonly jobBytes: number;
  readonly #workers: Worker[] = [];
  readonly #idle: Worker[] = [];
  readonly #freeSlots: Slot[] = [];
  readonly #queue: Pending[] = [];
  readonly #running = new Map<Worker, { readonly pending: Pending; readonly slot: Slot }>();
  #failure: unknown;

  /** `slots` bounds the results alive at once (running, or not yet released). */
  constructor(
    setup: Pick<CompressWorkerSetup, 'clusterBytes' | 'compressionType' | 'zstdModulePath'>,
    jobBytes: number,
    threads = availableParallelism(),
    slots = 2 * threads,
  ) {
    this.jobBytes = jobBytes;
    const shared: CompressSlot[] = [];
    for (let index = 0; index < Math.max(1, slots); index++) {
      const s = { input: new SharedArrayBuffer(jobBytes), output: new SharedArrayBuffer(jobBytes + outputSlackBytes(setup.clusterBytes)) };
      shared.push(s);
      this.#freeSlots.push({ index, input: new Uint8Array(s.input), output: new Uint8Array(s.output) });
    }
    const workerData: CompressWorkerSetup = { ...setup, slots: shared };
    for (let i = 0; i < Math.max(1, threads); i++) {
      const worker = new Worker(WORKER_URL, { workerData, resourceLimits: WORKER_HEAP_LIMITS });
      worker.on('message', (a: CompressAnswer) => this.#settle(worker, a));
      worker.on('error', (err) => this.#fail(err));
      worker.on('exit', (code) => this.#fail(new Error(`a compression thread exited with code ${code}`)));
      this.#workers.push(worker);
      this.#idle.push(worker);
    }
  }

  /** Compresses the clusters of `data` (at most `jobBytes`, from a cluster boundary); see compress-worker. */
  compress(data: Uint8Array): Promise<CompressResult> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (data.length > this.jobBytes) return Promise.reject(new RangeError(`a ${data.length}-byte job is over ${this.jobBytes} bytes`));
    return new Promise((resolve, reject) => {
      this.#queue.push({ data, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#freeSlots.length > 0 && this.#queue.length > 0) {
      const worker = this.#idle.pop()!;
      const slot = this.#freeSlots.pop()!;
      const pending = this.#queue.shift()!;
      this.#running.set(worker, { pending, slot });
      slot.input.set(pending.data);
      const job: CompressJob = { slot: slot.index, lengthBytes: pending.data.length };
      worker.postMessage(job);
    }
  }

  #settle(worker: Worker, answer: CompressAnswer): void {
    const running = this.#running.get(worker);
    this.#running.delete(worker);
    this.#idle.push(worker);
    if (running === undefined) return;
    const { pending, slot } = running;
    if (answer.error !== undefined) {
      this.#freeSlots.push(slot);
      pending.reject(new SparsifyError('INTERNAL', `compressing a cluster failed: ${answer.error}`));
    } else {
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.#freeSlots.push(slot);
        this.#dispatch();
      };
      pending.resolve({ lengths: answer.lengths, out: slot.output, release });
    }
    this.#dispatch();
  }

  /** A dead thread fails every job, running or queued, and every later one. */
  #fail(err: unknown): void {
    if (this.#failure !== undefined) return;
    this.#failure = new SparsifyError('INTERNAL', `compression thread failed: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
    this.#rejectAll();
  }

  #rejectAll(): void {
    for (const { pending } of this.#running.values()) pending.reject(this.#failure);
    for (const p of this.#queue.splice(0)) p.reject(this.#failure);
    this.#running.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#failure ??= new SparsifyError('INTERNAL', 'the compression pool is closed');
    this.#rejectAll();
    await Promise.all(this.#workers.splice(0).map((w) => w.terminate()));
  }
}
