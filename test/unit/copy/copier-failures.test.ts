import { describe, expect, it } from 'vitest';
import { copyBlocks } from '../../../src/copy/copier.js';
import { MemorySource, RecordingSink } from '../../helpers/memory-block.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { isSparsifyError } from '../../../src/errors.js';
import { sleep } from '../../helpers/copy-fakes.js';

const KiB = 1024;
const SIZE = 1024 * KiB;
const CHUNK = 16 * KiB;

function busyDisk(): Uint8Array {
  return new Uint8Array(SIZE).fill(0x11);
}

describe('copyBlocks when something fails', () => {
  it('rethrows the first source error after draining the requests in flight', async () => {
    const boom = new Error('read failed at 256K');
    let callsAtFailure = -1;
    const source = new MemorySource(busyDisk(), {
      onRead: async (offset) => {
        await sleep(offset === 256 * KiB ? 1 : 5);
        if (offset !== 256 * KiB) return;
        callsAtFailure = sink.calls.length;
        throw boom;
      },
    });
    const sink = new RecordingSink(SIZE, { onWrite: () => sleep(3) });
    const err = await copyBlocks({ source, sink, skip: ExtentSet.empty, chunkBytes: CHUNK, maxInFlightBytes: 8 * CHUNK }).catch(
      (e: unknown) => e,
    );
    expect(err).toBe(boom);
    expect(source.inFlight).toBe(0);
    expect(sink.inFlight).toBe(0);
    // Nothing started after the failure: reads that were in flight write nothing, and reads
    // stop within the in-flight window past 256K.
    expect(sink.calls.length).toBe(callsAtFailure);
    expect(Math.max(...source.reads.map((r) => r.start))).toBeLessThan(256 * KiB + 8 * CHUNK);
    expect(sink.callsOf('flush')).toEqual([]);
  });

  it('rethrows a sink error after draining, and issues no more reads', async () => {
    const boom = new Error('ENOSPC');
    let readsAtFailure = -1;
    const source = new MemorySource(busyDisk(), { onRead: () => sleep(1) });
    const sink = new RecordingSink(SIZE, {
      onWrite: async (offset) => {
        await sleep(2);
        if (offset !== 128 * KiB) return;
        readsAtFailure = source.reads.length;
        throw boom;
      },
    });
    await expect(
      copyBlocks({ source, sink, skip: ExtentSet.empty, chunkBytes: CHUNK, maxInFlightBytes: 4 * CHUNK }),
    ).rejects.toBe(boom);
    expect(source.reads.length).toBe(readsAtFailure);
    expect(source.inFlight).toBe(0);
    expect(sink.inFlight).toBe(0);
  });

  it('rethrows an extents error', async () => {
    const source = new MemorySource(busyDisk(), { zeroRanges: [] });
    source.extents = () => Promise.reject(new Error('block status failed'));
    await expect(copyBlocks({ source, sink: new RecordingSink(SIZE), skip: ExtentSet.empty })).rejects.toThrow(
      'block status failed',
    );
  });

  it('stops on abort, waits for the requests in flight, and throws CANCELLED', async () => {
    const controller = new AbortController();
    const source = new MemorySource(busyDisk(), {
      onRead: async (offset) => {
        if (offset === 64 * KiB) controller.abort();
        await sleep(3);
      },
    });
    const sink = new RecordingSink(SIZE, { onWrite: () => sleep(2) });
    const err = await copyBlocks({
      source,
      sink,
      skip: ExtentSet.empty,
      signal: controller.signal,
      chunkBytes: CHUNK,
      maxInFlightBytes: 4 * CHUNK,
    }).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'CANCELLED')).toBe(true);
    expect(source.inFlight).toBe(0);
    expect(sink.inFlight).toBe(0);
    expect(source.reads.length).toBeLessThanOrEqual(8);
    expect(sink.callsOf('flush')).toEqual([]);
  });

  it('throws CANCELLED at once for a signal aborted before the start', async () => {
    const source = new MemorySource(busyDisk());
    const controller = new AbortController();
    controller.abort();
    const err = await copyBlocks({ source, sink: new RecordingSink(SIZE), skip: ExtentSet.empty, signal: controller.signal }).catch(
      (e: unknown) => e,
    );
    expect(isSparsifyError(err, 'CANCELLED')).toBe(true);
    expect(source.reads).toEqual([]);
  });

  it('rejects a source that returns the wrong number of bytes', async () => {
    const source = new MemorySource(busyDisk());
    source.read = () => Promise.resolve(new Uint8Array(3));
    await expect(copyBlocks({ source, sink: new RecordingSink(SIZE), skip: ExtentSet.empty })).rejects.toMatchObject({
      code: 'INTERNAL',
    });
  });
});
