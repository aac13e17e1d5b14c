import type { Range } from '../../src/disk/extent-set.js';
import type { BlockSink, BlockSource, Extent } from '../../src/disk/types.js';

/** Runs before a fake's operation completes: may wait (to keep requests in flight) or throw. */
export type FakeHook = (offsetBytes: number, lengthBytes: number) => Promise<void> | void;

/** Options of {@link MemorySource}. */
export interface MemorySourceOptions {
  /** Ranges the source reports as NBD_STATE_ZERO; without it the source cannot give extents. */
  readonly zeroRanges?: readonly Range[];
  /** Cut each extents reply after this many extents, as a server may (default: no limit). */
  readonly maxExtentsPerReply?: number;
  readonly onRead?: FakeHook;
}

/** An in-memory BlockSource that records every read; for tests. */
export class MemorySource implements BlockSource {
  readonly sizeBytes: number;
  readonly canExtents: boolean;
  readonly reads: Range[] = [];
  extentsCalls = 0;
  inFlight = 0;
  maxInFlight = 0;
  readonly #data: Uint8Array;
  readonly #options: MemorySourceOptions;

  constructor(data: Uint8Array, options: MemorySourceOptions = {}) {
    this.#data = data;
    this.#options = options;
    this.sizeBytes = data.length;
    this.canExtents = options.zeroRanges !== undefined;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.sizeBytes) {
      throw new RangeError(`read ${offsetBytes}+${lengthBytes} is outside the ${this.sizeBytes}-byte source`);
    }
    this.reads.push({ start: offsetBytes, end: offsetBytes + lengthBytes });
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      await this.#options.onRead?.(offsetBytes, lengthBytes);
      return this.#data.slice(offsetBytes, offsetBytes + lengthBytes);
    } finally {
      this.inFlight--;
    }
  }

  extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.extentsCalls++;
    const out: Extent[] = [];
    const end = offsetBytes + lengthBytes;
    let pos = offsetBytes;
    for (const z of this.#options.zeroRanges ?? []) {
      if (z.end <= pos || z.start >= end) continue;
      if (z.start > pos) out.push(extent(pos, z.start, false));
      pos = Math.min(z.end, end);
      out.push(extent(Math.max(z.start, offsetBytes), pos, true));
    }
    if (pos < end) out.push(extent(pos, end, false));
    return Promise.resolve(out.slice(0, this.#options.maxExtentsPerReply ?? out.length));
  }
}

function extent(start: number, end: number, zero: boolean): Extent {
  return { offsetBytes: start, lengthBytes: end - start, zero, hole: zero };
}

/** One call a {@link RecordingSink} received. */
export interface SinkCall {
  readonly op: 'write' | 'zero' | 'flush';
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Options of {@link RecordingSink}. */
export interface RecordingSinkOptions {
  readonly zeroInitialized?: boolean;
  readonly writeAlignmentBytes?: number;
  readonly onWrite?: FakeHook;
}

/**
 * An in-memory BlockSink that records every call and checks the contract: in bounds, aligned
 * (a short request only where it ends the sink), and no byte written or zeroed twice. A sink
 * that is not zero-initialized starts filled with 0xEE so that a missing zero write shows.
 */
export class RecordingSink implements BlockSink {
  readonly sizeBytes: number;
  readonly zeroInitialized: boolean;
  readonly writeAlignmentBytes: number;
  readonly image: Uint8Array;
  readonly calls: SinkCall[] = [];
  inFlight = 0;
  readonly #touched: Uint8Array;
  readonly #onWrite: FakeHook | undefined;

  constructor(sizeBytes: number, options: RecordingSinkOptions = {}) {
    this.sizeBytes = sizeBytes;
    this.zeroInitialized = options.zeroInitialized ?? true;
    this.writeAlignmentBytes = options.writeAlignmentBytes ?? 1;
    this.image = new Uint8Array(sizeBytes).fill(this.zeroInitialized ? 0 : 0xee);
    this.#touched = new Uint8Array(sizeBytes);
    this.#onWrite = options.onWrite;
  }

  /** The calls of one kind. */
  callsOf(op: SinkCall['op']): SinkCall[] {
    return this.calls.filter((c) => c.op === op);
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    await this.#apply({ op: 'write', offsetBytes, lengthBytes: data.length }, () => this.image.set(data, offsetBytes));
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.#apply({ op: 'zero', offsetBytes, lengthBytes }, () =>
      this.image.fill(0, offsetBytes, offsetBytes + lengthBytes),
    );
  }

  flush(): Promise<void> {
    this.calls.push({ op: 'flush', offsetBytes: 0, lengthBytes: 0 });
    return Promise.resolve();
  }

  async #apply(call: SinkCall, effect: () => void): Promise<void> {
    this.#check(call);
    this.calls.push(call);
    this.inFlight++;
    try {
      await this.#onWrite?.(call.offsetBytes, call.lengthBytes);
      effect();
    } finally {
      this.inFlight--;
    }
  }

  #check({ op, offsetBytes, lengthBytes }: SinkCall): void {
    const end = offsetBytes + lengthBytes;
    const a = this.writeAlignmentBytes;
    if (offsetBytes < 0 || lengthBytes <= 0 || end > this.sizeBytes) {
      throw new RangeError(`${op} ${offsetBytes}+${lengthBytes} is outside the ${this.sizeBytes}-byte sink`);
    }
    if (offsetBytes % a !== 0 || (lengthBytes % a !== 0 && end !== this.sizeBytes)) {
      throw new RangeError(`${op} ${offsetBytes}+${lengthBytes} is not aligned to ${a}`);
    }
    if (this.#touched.subarray(offsetBytes, end).includes(1)) {
      throw new RangeError(`${op} ${offsetBytes}+${lengthBytes} touches bytes already written`);
    }
    this.#touched.fill(1, offsetBytes, end);
  }
}
