import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/nbd/byte-queue.js';
import { exportInfo } from '../../../src/nbd/export-info.js';
import type { Negotiated } from '../../../src/nbd/handshake.js';
import { InFlightLimit } from '../../../src/nbd/in-flight-limit.js';

const negotiated = (over: Partial<Negotiated> = {}): Negotiated => ({
  exportName: 'disk', sizeBytes: 1 << 30, transmissionFlags: 1 | (1 << 6) | (1 << 11), structuredReplies: true,
  baseAllocationId: 3, blockSizes: undefined, ...over,
});

describe('exportInfo', () => {
  it('decodes flags and uses the default sizes when none were advertised', () => {
    const info = exportInfo(negotiated());
    expect(info).toMatchObject({ canWriteZeroes: true, canFastZero: true, canTrim: false, readOnly: false, blockStatus: true });
    expect(info.blockSizes).toEqual({ minimumBytes: 1, preferredBytes: 4096, maximumBytes: 2 ** 25 });
    expect(info.maxRequestBytes).toBe(2 ** 25);
  });

  it('caps requests at 32 MiB and rounds an odd server maximum down to the preferred size', () => {
    const sizes = (max: number) => ({ minimumBytes: 512, preferredBytes: 4096, maximumBytes: max });
    expect(exportInfo(negotiated({ blockSizes: sizes(0xffffffff) })).maxRequestBytes).toBe(2 ** 25);
    expect(exportInfo(negotiated({ blockSizes: sizes(1_000_000) })).maxRequestBytes).toBe(999_424);
    expect(exportInfo(negotiated({ blockSizes: sizes(2 ** 20) }), 3000).maxRequestBytes).toBe(2560);
    expect(() => exportInfo(negotiated(), 0)).toThrow(RangeError);
  });

  it('never claims FAST_ZERO without WRITE_ZEROES, nor block status without a context', () => {
    const info = exportInfo(negotiated({ transmissionFlags: 1 | (1 << 11), baseAllocationId: undefined }));
    expect(info.canFastZero).toBe(false);
    expect(info.blockStatus).toBe(false);
  });
});

describe('ByteQueue', () => {
  it('takes views within a chunk, copies across chunks, and peeks across chunk boundaries', () => {
    const q = new ByteQueue();
    q.push(Buffer.from([1, 2, 3]));
    q.push(Buffer.from([4, 5, 6, 7]));
    expect(q.peekUint32()).toBe(0x01020304);
    expect([...q.take(2)]).toEqual([1, 2]);
    expect([...q.take(3)]).toEqual([3, 4, 5]);
    const dest = new Uint8Array(4);
    expect(q.copyInto(dest, 1, 10)).toBe(2);
    expect([...dest]).toEqual([0, 6, 7, 0]);
    expect(q.length).toBe(0);
    expect(() => q.take(1)).toThrow(RangeError);
  });
});

describe('InFlightLimit', () => {
  it('admits in FIFO order within both limits, and a request over the byte limit alone', async () => {
    const limit = new InFlightLimit(2, 100);
    const order: string[] = [];
    await limit.acquire(60);
    const big = limit.acquire(500).then(() => order.push('big'));
    const small = limit.acquire(1).then(() => order.push('small'));
    await Promise.resolve();
    expect(order).toEqual([]);
    limit.release(60);
    await big;
    expect(order).toEqual(['big']);
    limit.release(500);
    await small;
    expect(order).toEqual(['big', 'small']);
    const idle = limit.idle();
    limit.release(1);
    await idle;
    expect(limit.active).toBe(0);
  });

  it('rejects waiting and later requests after fail()', async () => {
    const limit = new InFlightLimit(1, 100);
    await limit.acquire(1);
    const waiting = limit.acquire(1);
    limit.fail(new Error('gone'));
    await expect(waiting).rejects.toThrow('gone');
    await expect(limit.acquire(1)).rejects.toThrow('gone');
  });
});
