/**
 * A sequential sink (a streamOptimized vmdk behind qemu appends grains as they come): the copier
 * sends its writes one at a time, in increasing offset order, whole grains, while reads of the
 * source are randomly slow — the conditions under which a parallel copy writes out of order.
 */
import { describe, expect, it } from 'vitest';
import { copyBlocks } from '../../src/copy/copier.js';
import { ExtentSet } from '../../src/disk/extent-set.js';
import { sleep } from '../helpers/copy-fakes.js';
import { MemorySource, RecordingSink } from '../helpers/memory-block.js';

const KiB = 1024;
const GRAIN = 64 * KiB;
/** Not a whole number of grains: the last write is short and ends the disk. */
const SIZE = 4 * 1024 * KiB + 3 * 512;

/** Data with holes: every third 64 KiB run zero, so chunks split into several writes. */
function patchyDisk(): Uint8Array {
  const data = new Uint8Array(SIZE);
  for (let off = 0; off < SIZE; off += GRAIN) if ((off / GRAIN) % 3 !== 2) data.fill((off / GRAIN) % 251 || 1, off, Math.min(off + GRAIN, SIZE));
  return data;
}

async function copyTo(sequential: boolean) {
  const data = patchyDisk();
  // The read at each whole MiB is slow: a parallel copier writes the chunks after it first.
  const source = new MemorySource(data, { onRead: (offset) => sleep(offset % (1024 * KiB) === 0 ? 20 : 1) });
  let maxInFlight = 0;
  const sink: RecordingSink & { sequential?: boolean } = new RecordingSink(SIZE, {
    writeAlignmentBytes: GRAIN,
    onWrite: async () => {
      maxInFlight = Math.max(maxInFlight, sink.inFlight);
      await sleep(1);
    },
  });
  if (sequential) Object.defineProperty(sink, 'sequential', { value: true });
  await copyBlocks({ source, sink, skip: ExtentSet.from([{ start: 2 * 1024 * KiB, end: 2 * 1024 * KiB + 3 * GRAIN }]), chunkBytes: 512 * KiB, maxInFlightBytes: 4 * 512 * KiB });
  const writes = sink.callsOf('write');
  return { data, sink, writes, maxInFlight, maxReadsInFlight: source.maxInFlight };
}

describe('copyBlocks into a sequential sink', () => {
  it('writes one request at a time, in increasing offset order, whole grains but the last', async () => {
    const { data, sink, writes, maxInFlight, maxReadsInFlight } = await copyTo(true);
    expect(writes.length).toBeGreaterThan(10);
    expect(maxInFlight).toBe(1);
    expect(maxReadsInFlight).toBe(1);
    for (let i = 1; i < writes.length; i++) expect(writes[i]!.offsetBytes).toBeGreaterThanOrEqual(writes[i - 1]!.offsetBytes + writes[i - 1]!.lengthBytes);
    for (const w of writes.slice(0, -1)) expect([w.offsetBytes % GRAIN, w.lengthBytes % GRAIN]).toEqual([0, 0]);
    expect(writes.at(-1)!.offsetBytes + writes.at(-1)!.lengthBytes).toBe(SIZE);
    // The skipped range reads as zero; everything else is the source.
    const expected = data.slice();
    expected.fill(0, 2 * 1024 * KiB, 2 * 1024 * KiB + 3 * GRAIN);
    expect(Buffer.from(sink.image).equals(Buffer.from(expected))).toBe(true);
  });

  it('(the same copy into an ordinary sink overlaps requests and writes out of order)', async () => {
    const { writes, maxInFlight } = await copyTo(false);
    expect(maxInFlight).toBeGreaterThan(1);
    const offsets = writes.map((w) => w.offsetBytes);
    expect(offsets).not.toEqual([...offsets].sort((a, b) => a - b));
  });
});
