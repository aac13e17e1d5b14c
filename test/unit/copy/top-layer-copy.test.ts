import { describe, expect, it } from 'vitest';
import { copyTopLayer, splitByCluster } from '../../../src/copy/top-layer-copy.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import type { BlockSink } from '../../../src/disk/types.js';
import { fillData, prng, randomRanges } from '../../helpers/copy-fakes.js';
import { memoryReader } from '../../helpers/mem-reader.js';

const CLUSTER = 4096;

/**
 * A qcow2 over a backing file, as the guest reads it: a byte OUT holds itself (written, or
 * zeroed) reads as OUT holds it; any other byte reads from the backing file.
 */
function overBacking(base: Uint8Array) {
  const own = new Uint8Array(base.length);
  const data = new Uint8Array(base.length);
  const dataWrites: { start: number; end: number }[] = [];
  const sink: BlockSink = {
    sizeBytes: base.length,
    zeroInitialized: false,
    writeAlignmentBytes: 1,
    write: async (o, d) => {
      data.set(d, o);
      own.fill(1, o, o + d.length);
      dataWrites.push({ start: o, end: o + d.length });
    },
    writeZeroes: async (o, l, punch) => {
      expect(punch).toBe(false);
      data.fill(0, o, o + l);
      own.fill(1, o, o + l);
    },
    flush: async () => {},
  };
  const guestView = () => data.map((b, i) => (own[i] ? b : base[i]!));
  const owned = () => ExtentSet.from([...own].flatMap((b, i) => (b ? [{ start: i, end: i + 1 }] : [])));
  return { sink, guestView, owned, dataWrites };
}

describe('copyTopLayer', () => {
  it('leaves OUT reading as IN with the free ranges zero, and holds nothing outside the ranges it must own', async () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rand = prng(seed);
      const size = 64 * CLUSTER + (seed % 3) * 512;
      const base = new Uint8Array(size);
      const baseData = ExtentSet.from(randomRanges(rand, size, 6, 16 * CLUSTER));
      for (const r of baseData.ranges) fillData(base, r.start, r.end, rand);
      // IN: the base, with its top layer's ranges overwritten by data or by zeros (deleted files, zero clusters).
      const top = ExtentSet.from(randomRanges(rand, size, 5, 8 * CLUSTER));
      const input = Uint8Array.from(base);
      for (const r of top.ranges) {
        if (rand() < 0.3) input.fill(0, r.start, r.end);
        else fillData(input, r.start, r.end, rand);
      }
      const zeroed = ExtentSet.from(randomRanges(rand, size, 5, 8 * CLUSTER));
      const present = baseData.union(top);
      const own = top.union(zeroed.intersect(present));
      const out = overBacking(base);
      const stats = await copyTopLayer({ source: memoryReader(input), sink: out.sink, own, zeroed, clusterBytes: CLUSTER });
      const expected = Uint8Array.from(input);
      for (const r of zeroed.ranges) expected.fill(0, r.start, r.end);
      expect(Buffer.from(out.guestView()).equals(Buffer.from(expected)), `seed ${seed}`).toBe(true);
      expect(out.owned().subtract(own).isEmpty, `seed ${seed}: OUT holds a range outside own`).toBe(true);
      expect(stats.readBytes).toBe(own.subtract(zeroed).totalBytes);
      expect(stats.skippedFreeBytes + stats.readBytes + stats.keptInBackingBytes!).toBe(size);
      // Data is only written for clusters that hold some.
      for (const w of out.dataWrites) expect(input.subarray(w.start, w.end).some((b) => b !== 0), `seed ${seed}`).toBe(true);
    }
  });

  it('stops on a failed write and rethrows it, with no write left unawaited', async () => {
    const size = 32 * CLUSTER;
    const input = new Uint8Array(size).fill(7);
    const out = overBacking(new Uint8Array(size));
    const sink = { ...out.sink, write: () => Promise.reject(new Error('EIO on OUT')) };
    await expect(copyTopLayer({ source: memoryReader(input), sink, own: ExtentSet.of(0, size), zeroed: ExtentSet.empty, clusterBytes: CLUSTER })).rejects.toThrow('EIO on OUT');
  });
});

describe('splitByCluster', () => {
  it('cuts at absolute cluster boundaries, clipped to the buffer', () => {
    const buf = Buffer.alloc(3 * CLUSTER);
    // Disk byte 5125 (in the cluster [4096, 8192)); the buffer starts 1 KiB into a cluster.
    buf[CLUSTER + 5] = 1;
    expect(splitByCluster(buf, 1024, CLUSTER)).toEqual({
      zero: [{ start: 1024, end: CLUSTER }, { start: 2 * CLUSTER, end: 3 * CLUSTER + 1024 }],
      data: [{ start: CLUSTER, end: 2 * CLUSTER }],
    });
  });
});
