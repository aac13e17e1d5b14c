import { describe, expect, it } from 'vitest';
import { copyBlocks } from '../../../src/copy/copier.js';
import { MemorySource, RecordingSink } from '../../helpers/memory-block.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { expectedImage, fillData, firstDifference, firstOverlap, prng } from '../../helpers/copy-fakes.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** 1 MiB: data [0,64K) [200K,264K) [900K,1M); everything else zero. */
function sampleDisk(): Uint8Array {
  const rand = prng(1);
  const data = new Uint8Array(MiB);
  fillData(data, 0, 64 * KiB, rand);
  fillData(data, 200 * KiB, 264 * KiB, rand);
  fillData(data, 900 * KiB, MiB, rand);
  return data;
}

describe('copyBlocks', () => {
  it('copies data and leaves zero granules unwritten on a zero-initialized sink', async () => {
    const data = sampleDisk();
    const source = new MemorySource(data);
    const sink = new RecordingSink(data.length);
    const stats = await copyBlocks({ source, sink, skip: ExtentSet.empty, chunkBytes: 128 * KiB });
    expect(firstDifference(sink.image, data)).toBe(-1);
    expect(sink.callsOf('zero')).toEqual([]);
    const writes = sink.callsOf('write').map((c) => [c.offsetBytes / KiB, c.lengthBytes / KiB]);
    expect(writes.sort((a, b) => a[0]! - b[0]!)).toEqual([
      [0, 64],
      [200, 56], // the chunk grid of 128 KiB cuts this run in two
      [256, 8],
      [900, 124],
    ]);
    expect(sink.calls[sink.calls.length - 1]!.op).toBe('flush');
    expect(stats).toMatchObject({ totalBytes: MiB, readBytes: MiB, skippedFreeBytes: 0, zeroExtentBytes: 0 });
    expect(stats.dataBytesWritten).toBe(64 * KiB + 64 * KiB + 124 * KiB);
    expect(stats.zeroScannedBytes).toBe(MiB - stats.dataBytesWritten);
  });

  it('never reads skipped ranges or zero extents, and they read as zero in the result', async () => {
    const data = sampleDisk();
    const skip = ExtentSet.from([{ start: 16 * KiB, end: 48 * KiB }, { start: 950 * KiB, end: 960 * KiB }]);
    // A server that calls a data range zero is believed: the copier must not even look.
    const zeroRanges = [{ start: 220 * KiB, end: 240 * KiB }, { start: 600 * KiB, end: 700 * KiB }];
    const source = new MemorySource(data, { zeroRanges });
    const sink = new RecordingSink(data.length);
    const stats = await copyBlocks({ source, sink, skip, chunkBytes: 64 * KiB });
    expect(firstDifference(sink.image, expectedImage(data, skip.ranges, zeroRanges))).toBe(-1);
    expect(firstOverlap(source.reads, [...skip.ranges, ...zeroRanges])).toBeUndefined();
    expect(stats.skippedFreeBytes).toBe(42 * KiB);
    expect(stats.zeroExtentBytes).toBe(120 * KiB);
    expect(stats.readBytes).toBe(MiB - 42 * KiB - 120 * KiB);
    expect(stats.readBytes).toBe(source.reads.reduce((n, r) => n + r.end - r.start, 0));
  });

  it('coalesces skipped, zero-extent and all-zero ranges into one write-zeroes across chunks', async () => {
    const data = sampleDisk();
    const skip = ExtentSet.of(300 * KiB, 100 * KiB);
    const zeroRanges = [{ start: 500 * KiB, end: 600 * KiB }];
    const source = new MemorySource(data, { zeroRanges });
    const sink = new RecordingSink(data.length, { zeroInitialized: false });
    await copyBlocks({ source, sink, skip, chunkBytes: 16 * KiB, maxInFlightBytes: 256 * KiB });
    expect(firstDifference(sink.image, expectedImage(data, skip.ranges, zeroRanges))).toBe(-1);
    expect(sink.callsOf('zero').map((c) => [c.offsetBytes, c.offsetBytes + c.lengthBytes])).toEqual([
      [64 * KiB, 200 * KiB],
      [264 * KiB, 900 * KiB],
    ]);
  });

  it('sends one write-zeroes for a disk that is all skipped, and reads nothing', async () => {
    const source = new MemorySource(sampleDisk());
    const sink = new RecordingSink(MiB, { zeroInitialized: false });
    const stats = await copyBlocks({ source, sink, skip: ExtentSet.of(0, 2 * MiB) });
    expect(source.reads).toEqual([]);
    expect(sink.calls).toEqual([
      { op: 'zero', offsetBytes: 0, lengthBytes: MiB },
      { op: 'flush', offsetBytes: 0, lengthBytes: 0 },
    ]);
    expect(stats.skippedFreeBytes).toBe(MiB);
  });

  it('writes whole aligned clusters once each, skipping all-zero clusters (compress filter)', async () => {
    const data = sampleDisk();
    data[700 * KiB] = 1; // one byte makes its whole 64 KiB cluster data
    // A skip that cuts clusters: its bytes are zero padding inside the clusters that are written.
    const skip = ExtentSet.of(10 * KiB, 20 * KiB);
    const source = new MemorySource(data);
    const sink = new RecordingSink(data.length, { writeAlignmentBytes: 64 * KiB });
    await copyBlocks({ source, sink, skip, chunkBytes: 256 * KiB });
    expect(firstDifference(sink.image, expectedImage(data, skip.ranges))).toBe(-1);
    const clusters = sink.callsOf('write').flatMap((c) =>
      Array.from({ length: c.lengthBytes / (64 * KiB) }, (_, i) => c.offsetBytes / (64 * KiB) + i),
    );
    expect(clusters.sort((a, b) => a - b)).toEqual([0, 3, 4, 10, 14, 15]);
    expect(firstOverlap(source.reads, skip.ranges)).toBeUndefined();
  });

  it('pads the final short cluster to the end of a sink whose size is not cluster-aligned', async () => {
    const size = MiB + 3 * KiB + 7; // raw input; the qcow2 output is rounded up to 512 bytes
    const data = new Uint8Array(size);
    data[size - 1] = 9;
    const sink = new RecordingSink(Math.ceil(size / 512) * 512, { writeAlignmentBytes: 64 * KiB });
    const stats = await copyBlocks({ source: new MemorySource(data), sink, skip: ExtentSet.empty });
    expect(sink.callsOf('write')).toEqual([{ op: 'write', offsetBytes: MiB, lengthBytes: sink.sizeBytes - MiB }]);
    expect(firstDifference(sink.image.subarray(0, size), data)).toBe(-1);
    expect(sink.image.subarray(size).every((b) => b === 0)).toBe(true);
    expect(stats.dataBytesWritten).toBe(sink.sizeBytes - MiB);
  });

  it('handles a disk size that is not a multiple of the granule', async () => {
    const size = 3 * 4096 + 5;
    const data = new Uint8Array(size);
    data[size - 2] = 7;
    const sink = new RecordingSink(size, { zeroInitialized: false });
    await copyBlocks({ source: new MemorySource(data), sink, skip: ExtentSet.empty });
    expect(firstDifference(sink.image, data)).toBe(-1);
    expect(sink.calls.filter((c) => c.op !== 'flush')).toEqual([
      { op: 'zero', offsetBytes: 0, lengthBytes: 3 * 4096 },
      { op: 'write', offsetBytes: 3 * 4096, lengthBytes: 5 },
    ]);
  });

  it('keeps reads in flight within maxInFlightBytes', async () => {
    const data = sampleDisk().fill(1);
    const source = new MemorySource(data, { onRead: () => new Promise((r) => setTimeout(r, 2)) });
    const sink = new RecordingSink(data.length);
    await copyBlocks({ source, sink, skip: ExtentSet.empty, chunkBytes: 16 * KiB, maxInFlightBytes: 64 * KiB });
    expect(source.maxInFlight).toBe(4);
    expect(firstDifference(sink.image, data)).toBe(-1);
  });

  it('reports progress in bytes it reads, of a total counted before it starts: the disk minus skip and zero extents', async () => {
    const seen: [number, number][] = [];
    const zeroRanges = [{ start: 64 * KiB, end: 200 * KiB }, { start: 264 * KiB, end: 900 * KiB }];
    const source = new MemorySource(sampleDisk(), { zeroRanges });
    const stats = await copyBlocks({
      source,
      sink: new RecordingSink(MiB),
      skip: ExtentSet.of(920 * KiB, 40 * KiB),
      chunkBytes: 64 * KiB,
      onProgress: (done, total) => seen.push([done, total]),
    });
    // Read: [0,64K) [200K,264K) [900K,920K) [960K,1M): 212 KiB, not the 1 MiB virtual size.
    expect(stats.readBytes).toBe(212 * KiB);
    expect(new Set(seen.map(([, total]) => total))).toEqual(new Set([212 * KiB]));
    const done = seen.map(([d]) => d);
    expect(done).toEqual([...done].sort((a, b) => a - b));
    expect(done[0]).toBe(0);
    expect(done.at(-1)).toBe(212 * KiB);
    expect(done.length).toBeGreaterThan(3);
  });

  it('reports progress from 0 of 0 to nothing more when everything is skipped', async () => {
    const seen: [number, number][] = [];
    const source = new MemorySource(sampleDisk());
    await copyBlocks({ source, sink: new RecordingSink(MiB), skip: ExtentSet.of(0, MiB), onProgress: (d, t) => seen.push([d, t]) });
    expect(seen).toEqual([[0, 0]]);
  });


  it('survives servers that answer extents with one extent, or not at the offset asked', async () => {
    const data = sampleDisk();
    const zeroRanges = [{ start: 64 * KiB, end: 200 * KiB }, { start: 264 * KiB, end: 900 * KiB }];
    for (const maxExtentsPerReply of [1, 0]) {
      const source = new MemorySource(data, { zeroRanges, maxExtentsPerReply });
      const sink = new RecordingSink(MiB);
      await copyBlocks({ source, sink, skip: ExtentSet.empty, chunkBytes: 64 * KiB });
      expect(firstDifference(sink.image, data)).toBe(-1);
      if (maxExtentsPerReply === 1) expect(firstOverlap(source.reads, zeroRanges)).toBeUndefined();
    }
  });

  it('copies an empty disk with nothing but a flush', async () => {
    const sink = new RecordingSink(0, { zeroInitialized: false });
    const stats = await copyBlocks({ source: new MemorySource(new Uint8Array(0)), sink, skip: ExtentSet.empty });
    expect(sink.calls.map((c) => c.op)).toEqual(['flush']);
    expect(stats.totalBytes).toBe(0);
  });

  it('refuses a sink smaller than the source', async () => {
    await expect(
      copyBlocks({ source: new MemorySource(new Uint8Array(8192)), sink: new RecordingSink(4096), skip: ExtentSet.empty }),
    ).rejects.toMatchObject({ code: 'INTERNAL' });
  });
});
