import { createCipheriv } from 'node:crypto';
import { open } from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { CompressPool } from '../../../src/qcow2/compress-pool.js';
import { nodeDeflate, systemDeflate, zlibCompressor, type CompressInto } from '../../../src/qcow2/compress-zlib.js';

const CLUSTER = 64 * 1024;
const MiB = 1024 * 1024;

/** 4 MiB of a real program (the node binary running this test): code, data, strings. */
let program: Buffer;
beforeAll(async () => {
  program = Buffer.alloc(4 * MiB);
  const fh = await open(process.execPath, 'r');
  try {
    await fh.read(program, 0, program.length, 16 * MiB);
  } finally {
    await fh.close();
  }
});

function clusters(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += CLUSTER) out.push(data.subarray(at, at + CLUSTER));
  return out;
}

/** Each cluster of `data` compressed: a copy of its bytes, or undefined where it did not shrink. */
function compressAll(compressInto: CompressInto, data: Buffer): (Buffer | undefined)[] {
  const dest = Buffer.alloc(2 * CLUSTER);
  return clusters(data).map((cluster) => {
    const length = compressInto(cluster, dest);
    return length < CLUSTER ? Buffer.from(dest.subarray(0, length)) : undefined;
  });
}

const random = createCipheriv('aes-128-ctr', Buffer.alloc(16, 3), Buffer.alloc(16)).update(Buffer.alloc(CLUSTER));

describe.each([
  ['the system libz (addon)', () => systemDeflate(CLUSTER)],
  ["Node's zlib (the fallback)", () => nodeDeflate(CLUSTER)],
] as const)('%s', (_name, make) => {
  it('deflates each cluster into one raw stream that a 4 KiB window inflates', () => {
    const compressInto = make();
    expect(compressInto).toBeDefined();
    const packed = compressAll(compressInto!, program);
    const originals = clusters(program);
    expect(packed.filter((p) => p !== undefined).length).toBeGreaterThan(originals.length / 2);
    packed.forEach((p, i) => {
      if (p !== undefined) expect(inflateRawSync(p, { windowBits: 12 }).equals(originals[i]!)).toBe(true);
    });
  });

  it('answers a cluster or more for data that does not shrink, and writes no further than a cluster', () => {
    const compressInto = make()!;
    const dest = Buffer.alloc(2 * CLUSTER, 0xee);
    expect(compressInto(random, dest)).toBeGreaterThanOrEqual(CLUSTER);
    expect(dest.subarray(CLUSTER).every((b) => b === 0xee)).toBe(true);
    // The stream was reset: the next cluster deflates as if it were the first.
    const text = Buffer.from('sparsify writes compressed clusters\n'.repeat(CLUSTER / 36 + 1)).subarray(0, CLUSTER);
    const length = compressInto(text, dest);
    expect(length).toBeLessThan(CLUSTER / 16);
    expect(inflateRawSync(dest.subarray(0, length), { windowBits: 12 }).equals(text)).toBe(true);
  });
});

describe('zlibCompressor', () => {
  it("uses the addon (built by npm install) with the system's libz: not node's own zlib, smaller on a program", () => {
    const chosen = zlibCompressor(CLUSTER);
    expect(chosen.library).toBe('system');
    const system = compressAll(chosen.compressInto, program);
    const node = compressAll(nodeDeflate(CLUSTER), program);
    const total = (packed: (Buffer | undefined)[]): number => packed.reduce((sum, p) => sum + (p?.length ?? CLUSTER), 0);
    // Node's zlib is Chromium's fork, and node exports its symbols: an addon that bound deflate to
    // them (linked with -lz) would write the same bytes as Node's zlib.
    expect(system.some((p, i) => p !== undefined && !p.equals(node[i] ?? Buffer.alloc(0)))).toBe(true);
    expect(total(system)).toBeLessThan(total(node) * 0.99);
  });

  it('gives a second compressor in the same thread a stream that works as the first', () => {
    const first = systemDeflate(CLUSTER)!;
    const before = compressAll(first, program.subarray(0, 8 * CLUSTER));
    const second = systemDeflate(CLUSTER)!;
    expect(compressAll(second, program.subarray(0, 8 * CLUSTER))).toEqual(before);
    expect(compressAll(first, program.subarray(0, 8 * CLUSTER))).toEqual(before);
  });

  it("runs in the pool's threads: their clusters are the main thread's, byte for byte", async () => {
    const data = program.subarray(0, 16 * CLUSTER);
    const expected = compressAll(systemDeflate(CLUSTER)!, data);
    await using pool = new CompressPool({ clusterBytes: CLUSTER, compressionType: 'zlib' }, data.length, 2, 2);
    // The second job also lands on a thread started moments ago, alongside the first.
    const results = await Promise.all([pool.compress(data), pool.compress(data)]);
    for (const result of results) {
      let at = 0;
      const got = [...result.lengths].map((length) => {
        if (length <= 0) return undefined;
        at += length;
        return Buffer.from(result.out.subarray(at - length, at));
      });
      result.release();
      // The pool stores clusters it guesses incompressible without deflating them: compare the others.
      got.forEach((g, i) => {
        if (g !== undefined) expect(g.equals(expected[i]!)).toBe(true);
      });
      expect(got.filter((g) => g !== undefined).length).toBeGreaterThan(8);
    }
  });
});
