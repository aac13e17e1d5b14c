/** Bounded, pipelined reads of metadata blocks for the ext free-map reader; runs of adjacent blocks share a read. */
import type { BlockReader } from '../../disk/types.js';
import { SparsifyError } from '../../errors.js';

/** No single read is larger than this, whatever the filesystem's size. */
const MAX_READ_BYTES = 1024 * 1024;
/** Reads in flight at once: hides NBD round trips, and bounds memory to this many MAX_READ_BYTES. */
const READS_IN_FLIGHT = 4;

/** Reads [offsetBytes, +lengthBytes) after checking it lies in the volume; BAD_IMAGE names `what`. */
export async function readChecked(
  reader: BlockReader,
  offsetBytes: number,
  lengthBytes: number,
  what: string,
): Promise<Uint8Array> {
  const inside =
    Number.isSafeInteger(offsetBytes) &&
    Number.isSafeInteger(lengthBytes) &&
    offsetBytes >= 0 &&
    lengthBytes >= 0 &&
    offsetBytes + lengthBytes <= reader.sizeBytes;
  if (!inside) {
    throw new SparsifyError(
      'BAD_IMAGE',
      `${what} at byte ${offsetBytes} (+${lengthBytes}) is outside the ${reader.sizeBytes}-byte volume`,
    );
  }
  return reader.read(offsetBytes, lengthBytes);
}

/** Consecutive indexes [from, to) of the sorted block list fetched by one read. */
interface Chunk {
  readonly from: number;
  readonly to: number;
}

function planChunks(sorted: readonly number[], blockBytes: number): Chunk[] {
  const maxBlocks = Math.max(1, Math.floor(MAX_READ_BYTES / blockBytes));
  const chunks: Chunk[] = [];
  let from = 0;
  while (from < sorted.length) {
    let to = from + 1;
    // Only adjacent blocks share a read: a gap could be file data, which is never read.
    while (to < sorted.length && sorted[to]! === sorted[to - 1]! + 1 && to - from < maxBlocks) to++;
    chunks.push({ from, to });
    from = to;
  }
  return chunks;
}

/** A read whose failure is held, not thrown, until it is awaited: abandoned reads never reject unhandled. */
type Settled = Promise<{ bytes: Uint8Array } | { error: unknown }>;

/**
 * Reads each block of `blocks` (any order, duplicates allowed) and hands it to `visit` in
 * ascending block order, merging adjacent blocks into reads of at most MAX_READ_BYTES with a
 * few in flight. Stops at the first non-undefined answer of `visit` and returns it.
 */
export async function visitBlocks<T>(
  reader: BlockReader,
  blockBytes: number,
  blocks: readonly number[],
  what: string,
  visit: (block: number, bytes: Uint8Array) => T | undefined,
): Promise<T | undefined> {
  const sorted = [...new Set(blocks)].sort((a, b) => a - b);
  const chunks = planChunks(sorted, blockBytes);
  const start = (c: Chunk): Settled => {
    const first = sorted[c.from]!;
    const lengthBytes = (sorted[c.to - 1]! - first + 1) * blockBytes;
    return readChecked(reader, first * blockBytes, lengthBytes, what).then(
      (bytes) => ({ bytes }),
      (error: unknown) => ({ error }),
    );
  };
  const queue: Settled[] = chunks.slice(0, READS_IN_FLIGHT).map(start);
  for (let i = 0; i < chunks.length; i++) {
    const result = await queue.shift()!;
    if (i + READS_IN_FLIGHT < chunks.length) queue.push(start(chunks[i + READS_IN_FLIGHT]!));
    if ('error' in result) throw result.error;
    const { from, to } = chunks[i]!;
    for (let k = from; k < to; k++) {
      const at = (sorted[k]! - sorted[from]!) * blockBytes;
      const answer = visit(sorted[k]!, result.bytes.subarray(at, at + blockBytes));
      if (answer !== undefined) return answer;
    }
  }
  return undefined;
}
