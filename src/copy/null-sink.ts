import type { BlockSink } from '../disk/types.js';

/** A sink that discards everything and counts what it was given; for benchmarks. */
export class NullSink implements BlockSink {
  readonly sizeBytes: number;
  readonly zeroInitialized: boolean;
  readonly writeAlignmentBytes: number;
  writtenBytes = 0;
  writes = 0;
  zeroedBytes = 0;
  flushes = 0;

  constructor(sizeBytes: number, options: { zeroInitialized?: boolean; writeAlignmentBytes?: number } = {}) {
    this.sizeBytes = sizeBytes;
    this.zeroInitialized = options.zeroInitialized ?? true;
    this.writeAlignmentBytes = options.writeAlignmentBytes ?? 1;
  }

  write(_offsetBytes: number, data: Uint8Array): Promise<void> {
    this.writtenBytes += data.length;
    this.writes++;
    return Promise.resolve();
  }

  writeZeroes(_offsetBytes: number, lengthBytes: number): Promise<void> {
    this.zeroedBytes += lengthBytes;
    return Promise.resolve();
  }

  flush(): Promise<void> {
    this.flushes++;
    return Promise.resolve();
  }
}
