import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CompressPool, type CompressResult } from '../../../src/qcow2/compress-pool.js';
import { zstdModulePath } from '../../../src/qcow2/compressed-sink.js';
import type { CompressionType } from '../../../src/qcow2/format.js';

const CLUSTER = 64 * 1024;
const zstd = zstdModulePath();
const zstdBinding = zstd === undefined ? undefined : (createRequire(import.meta.url)(zstd) as { decompress(dst: Uint8Array, src: Uint8Array): number });

/** A cluster of text (compresses), of random bytes (does not), or of zeros. */
function cluster(kind: 'text' | 'random' | 'zero', seed: number): Buffer {
  const out = Buffer.alloc(CLUSTER);
  if (kind === 'zero') return out;
  for (let at = 0, n = 0; at < CLUSTER; n++) {
    const digest = createHash('sha256').update(`${seed}:${n}`).digest();
    at += (kind === 'random' ? digest : Buffer.from(`line ${seed}.${n}: ${digest[0]! % 9} jumps\n`)).copy(out, at);
  }
  return out;
}

function decompress(type: CompressionType, packed: Uint8Array): Buffer {
  if (type === 'zlib') return inflateRawSync(packed, { windowBits: 12 });
  const out = Buffer.alloc(CLUSTER);
  expect(zstdBinding!.decompress(out, packed)).toBe(CLUSTER);
  return out;
}

async function withPool<T>(type: CompressionType, threads: number, slots: number, body: (pool: CompressPool) => Promise<T>): Promise<T> {
  const setup = { clusterBytes: CLUSTER, compressionType: type, ...(zstd ? { zstdModulePath: zstd } : {}) };
  await using pool = new CompressPool(setup, 4 * CLUSTER, threads, slots);
  return await body(pool);
}

describe.each(['zlib', 'zstd'] as const)('CompressPool, %s', (type) => {
  it.skipIf(type === 'zstd' && zstd === undefined)('answers per cluster: zero, stored as it is, or compressed parts that decode to the data', async () => {
    const clusters = [cluster('text', 1), cluster('zero', 2), cluster('random', 3), cluster('text', 4)];
    const data = Buffer.concat(clusters);
    await withPool(type, 2, 2, async (pool) => {
      const result = await pool.compress(data);
      const lengths = [...result.lengths];
      expect(lengths[1]).toBe(0);
      expect(lengths[2]).toBe(-1);
      let at = 0;
      for (const i of [0, 3]) {
        expect(lengths[i]).toBeGreaterThan(0);
        expect(lengths[i]).toBeLessThan(CLUSTER / 4);
        expect(decompress(type, result.out.subarray(at, at + lengths[i]!)).equals(clusters[i]!)).toBe(true);
        at += lengths[i]!;
      }
      result.release();
    });
  });

  it.skipIf(type === 'zstd' && zstd === undefined)('keeps a result until it is released: a job waits for a free slot', async () => {
    await withPool(type, 2, 1, async (pool) => {
      const first = await pool.compress(cluster('text', 5));
      const firstBytes = Buffer.from(first.out.subarray(0, first.lengths[0]));
      let second: CompressResult | undefined;
      const secondDone = pool.compress(cluster('text', 6)).then((r) => (second = r));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(second).toBeUndefined();
      expect(Buffer.from(first.out.subarray(0, first.lengths[0])).equals(firstBytes)).toBe(true);
      first.release();
      first.release(); // a second release must not free the slot twice
      await secondDone;
      expect(decompress(type, second!.out.subarray(0, second!.lengths[0])).equals(cluster('text', 6))).toBe(true);
      second!.release();
    });
  });
});
