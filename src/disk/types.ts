/**
 * The operations tables the copier and the engines talk to (after nbdcopy's `struct rw`).
 * Byte offsets and lengths are `number` throughout: exact up to 2^53 bytes (8 PiB).
 */

/** A run of bytes and what the source knows about it. */
export interface Extent {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** The range reads as zeros (NBD_STATE_ZERO). */
  readonly zero: boolean;
  /** The range is not allocated (NBD_STATE_HOLE). */
  readonly hole: boolean;
}

/** Something that can be read by offset: a file, an NBD export, a volume window of either. */
export interface BlockReader {
  readonly sizeBytes: number;
  /** Reads exactly `lengthBytes` at `offsetBytes`; throws on a short read. */
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array>;
}

/** A source for the copier: readable, and maybe able to say which ranges read as zero. */
export interface BlockSource extends BlockReader {
  /** Whether `extents` gives real information (NBD base:allocation); capability, not a throw. */
  readonly canExtents: boolean;
  /** Extents covering at least a prefix of [offset, offset+length); empty when it cannot say. */
  extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]>;
  /** Reads exactly `dest.byteLength` bytes at `offsetBytes` into `dest`: lets the copier reuse its buffers. */
  readInto?(offsetBytes: number, dest: Uint8Array): Promise<void>;
}

/** A destination for the copier. */
export interface BlockSink {
  readonly sizeBytes: number;
  /** The sink already reads as zero everywhere (a new sparse file, a new qcow2): never write zeros. */
  readonly zeroInitialized: boolean;
  /** Writes must be aligned to, and a multiple of, this many bytes (1 when anything goes). */
  readonly writeAlignmentBytes: number;
  /**
   * Writes must come one at a time in increasing offset order: the sink appends what it is
   * given (a streamOptimized vmdk stores each grain after the previous one).
   */
  readonly sequential?: boolean;
  /**
   * Chunk size and read budget this sink wants from the copier, where the defaults do not suit
   * it (the compressed qcow2 sink: its own job slots already hold the data in flight).
   */
  readonly copySizes?: { readonly chunkBytes: number; readonly maxInFlightBytes: number };
  write(offsetBytes: number, data: Uint8Array): Promise<void>;
  /** Makes the range read as zero; `punch` lets the sink deallocate it. */
  writeZeroes(offsetBytes: number, lengthBytes: number, punch: boolean): Promise<void>;
  /** Flushes to stable storage (fsync). */
  flush(): Promise<void>;
}

/** A read/write device the engines modify (the overlay, or the image in place). */
export interface BlockDevice extends BlockSource {
  write(offsetBytes: number, data: Uint8Array): Promise<void>;
  /** Makes the range read as zero; with `punch` the server may deallocate (NBD_CMD_WRITE_ZEROES without NO_HOLE). */
  writeZeroes(offsetBytes: number, lengthBytes: number, punch: boolean): Promise<void>;
  /** NBD_CMD_TRIM: the range may be deallocated; contents afterwards are unspecified. */
  trim(offsetBytes: number, lengthBytes: number): Promise<void>;
  flush(): Promise<void>;
}

/** A window [offsetBytes, offsetBytes+sizeBytes) of a reader, addressed from 0; bounds-checked. */
export function sliceReader(reader: BlockReader, offsetBytes: number, sizeBytes: number): BlockReader {
  if (offsetBytes < 0 || sizeBytes < 0 || offsetBytes + sizeBytes > reader.sizeBytes) {
    throw new RangeError(`window ${offsetBytes}+${sizeBytes} is outside a ${reader.sizeBytes}-byte disk`);
  }
  return {
    sizeBytes,
    read(off, len) {
      if (off < 0 || len < 0 || off + len > sizeBytes) {
        return Promise.reject(new RangeError(`read ${off}+${len} is outside a ${sizeBytes}-byte volume`));
      }
      return reader.read(offsetBytes + off, len);
    },
  };
}
