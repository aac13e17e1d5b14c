/**
 * A small pool of worker threads that compress clusters: one per core, each with one job at a
 * time, the rest queued here. The caller bounds how many jobs it submits (the sink waits for its
 * writes), so memory stays bounded by the jobs in flight.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SparsifyError } from '../errors.js';
import { compressWorkerMain, type CompressJob, type CompressResult, type CompressWorkerSetup } from './compress-worker.js';

interface Pending {
  readonly job: CompressJob;
  readonly resolve: (r: CompressResult) => void;
  readonly reject: (err: unknown) => void;
}

/** Compresses jobs on worker threads; dispose terminates them. */
export class CompressPool implements AsyncDisposable {
  readonly #workers: Worker[] = [];
  readonly #idle: Worker[] = [];
  readonly #queue: Pending[] = [];
  readonly #running = new Map<Worker, Pending>();
  #nextId = 0;
  #failure: unknown;

  constructor(setup: CompressWorkerSetup, threads = availableParallelism()) {
    const source = `(${compressWorkerMain.toString()})()`;
    for (let i = 0; i < Math.max(1, threads); i++) {
      const worker = new Worker(source, { eval: true, workerData: setup });
      worker.on('message', (r: CompressResult) => this.#settle(worker, r));
      worker.on('error', (err) => this.#fail(err));
      worker.on('exit', (code) => this.#fail(new Error(`a compression thread exited with code ${code}`)));
      this.#workers.push(worker);
      this.#idle.push(worker);
    }
  }

  /** Compresses the clusters of `data` (which starts on a cluster boundary); see compress-worker. */
  compress(data: Uint8Array): Promise<CompressResult> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#queue.push({ job: { id: this.#nextId++, data }, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const worker = this.#idle.pop()!;
      const pending = this.#queue.shift()!;
      this.#running.set(worker, pending);
      // Cloning a view would copy its whole backing buffer (a read chunk, the Buffer pool): copy
      // just the bytes, now that a thread is free for them, and hand them over.
      const data = new Uint8Array(pending.job.data);
      worker.postMessage({ id: pending.job.id, data }, [data.buffer]);
    }
  }

  #settle(worker: Worker, result: CompressResult): void {
    const pending = this.#running.get(worker);
    this.#running.delete(worker);
    this.#idle.push(worker);
    if (result.error !== undefined) pending?.reject(new SparsifyError('INTERNAL', `compressing a cluster failed: ${result.error}`));
    else pending?.resolve(result);
    this.#dispatch();
  }

  /** A dead thread fails every job, running or queued, and every later one. */
  #fail(err: unknown): void {
    if (this.#failure !== undefined) return;
    this.#failure = new SparsifyError('INTERNAL', `compression thread failed: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
    for (const p of [...this.#running.values(), ...this.#queue.splice(0)]) p.reject(this.#failure);
    this.#running.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#failure ??= new SparsifyError('INTERNAL', 'the compression pool is closed');
    for (const p of [...this.#running.values(), ...this.#queue.splice(0)]) p.reject(this.#failure);
    this.#running.clear();
    await Promise.all(this.#workers.splice(0).map((w) => w.terminate()));
  }
}
