/**
 * A small pool of worker threads that compress clusters: one per core, each with one job at a
 * time, the rest queued here. Each thread has two shared buffers of `jobBytes`, one for the data
 * in and one for the compressed clusters out, so a job allocates nothing that a thread must
 * collect. The caller bounds how many jobs it submits (the sink waits for its writes).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SparsifyError } from '../errors.js';
import { compressWorkerMain, type CompressAnswer, type CompressWorkerSetup } from './compress-worker.js';

/** A thread holds one job at a time and allocates little: small heaps are plenty. */
const WORKER_HEAP_LIMITS = { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 16 };

/** A compressed job: per cluster 0 (zero), -1 (store as is) or the length of its part of `out`. */
export interface CompressResult {
  readonly lengths: Int32Array;
  readonly out: Uint8Array;
}

interface Pending {
  readonly data: Uint8Array;
  readonly resolve: (r: CompressResult) => void;
  readonly reject: (err: unknown) => void;
}

interface Thread {
  readonly worker: Worker;
  readonly input: Uint8Array;
  readonly output: Uint8Array;
}

/** Compresses jobs on worker threads; dispose terminates them. */
export class CompressPool implements AsyncDisposable {
  /** The largest job: `compress` takes at most this many bytes. */
  readonly jobBytes: number;
  readonly #threads: Thread[] = [];
  readonly #idle: Thread[] = [];
  readonly #queue: Pending[] = [];
  readonly #running = new Map<Thread, Pending>();
  #nextId = 0;
  #failure: unknown;

  constructor(
    setup: Pick<CompressWorkerSetup, 'clusterBytes' | 'compressionType' | 'zstdModulePath'>,
    jobBytes: number,
    threads = availableParallelism(),
  ) {
    this.jobBytes = jobBytes;
    const source = `(${compressWorkerMain.toString()})()`;
    for (let i = 0; i < Math.max(1, threads); i++) {
      const input = new SharedArrayBuffer(jobBytes);
      const output = new SharedArrayBuffer(jobBytes);
      const workerData: CompressWorkerSetup = { ...setup, input, output };
      const worker = new Worker(source, { eval: true, workerData, resourceLimits: WORKER_HEAP_LIMITS });
      const thread = { worker, input: new Uint8Array(input), output: new Uint8Array(output) };
      worker.on('message', (a: CompressAnswer) => this.#settle(thread, a));
      worker.on('error', (err) => this.#fail(err));
      worker.on('exit', (code) => this.#fail(new Error(`a compression thread exited with code ${code}`)));
      this.#threads.push(thread);
      this.#idle.push(thread);
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
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const thread = this.#idle.pop()!;
      const pending = this.#queue.shift()!;
      this.#running.set(thread, pending);
      thread.input.set(pending.data);
      thread.worker.postMessage({ id: this.#nextId++, lengthBytes: pending.data.length });
    }
  }

  #settle(thread: Thread, answer: CompressAnswer): void {
    const pending = this.#running.get(thread);
    this.#running.delete(thread);
    if (answer.error !== undefined) {
      pending?.reject(new SparsifyError('INTERNAL', `compressing a cluster failed: ${answer.error}`));
    } else {
      const total = answer.lengths.reduce((n, len) => n + Math.max(0, len), 0);
      pending?.resolve({ lengths: answer.lengths, out: thread.output.slice(0, total) });
    }
    this.#idle.push(thread);
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
    for (const p of [...this.#running.values(), ...this.#queue.splice(0)]) p.reject(this.#failure);
    this.#running.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#failure ??= new SparsifyError('INTERNAL', 'the compression pool is closed');
    this.#rejectAll();
    await Promise.all(this.#threads.splice(0).map((t) => t.worker.terminate()));
  }
}
