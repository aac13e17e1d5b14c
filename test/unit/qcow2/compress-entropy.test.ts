import { createCipheriv, createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { byteEntropy, INCOMPRESSIBLE_BITS_PER_BYTE, looksIncompressible, MIN_GUESS_BYTES } from '../../../src/qcow2/compress-entropy.js';

const CLUSTER = 64 * 1024;
const counts = new Uint32Array(256);

/** Pseudo-random bytes as make-image writes them (AES-128-CTR over zeros), reproducible. */
function random(bytes: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

/** Text: numbered lines of a few words, as logs and sources are. */
function text(bytes: number): Buffer {
  const lines: string[] = [];
  for (let n = 0, length = 0; length < bytes; n++) {
    lines.push(`${n}: the cluster at ${n * 4096} holds ${(n * 7919) % 1000} blocks\n`);
    length += lines[n]!.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

/** qemu's zlib settings (qcow2_compress): the result is what qemu would store, or not. */
function qemuDeflate(cluster: Uint8Array): number {
  return deflateRawSync(cluster, { level: 6, windowBits: 12, memLevel: 9 }).length;
}

/** A real program's bytes: the running node binary, cluster by cluster (code, data, strings, tables). */
async function nodeBinaryClusters(count: number): Promise<Buffer[]> {
  const fh = await open(process.execPath, 'r');
  try {
    const { size } = await fh.stat();
    const clusters: Buffer[] = [];
    const step = Math.max(CLUSTER, Math.floor(size / count / CLUSTER) * CLUSTER);
    for (let at = 0; at + CLUSTER <= size && clusters.length < count; at += step) {
      const b = Buffer.alloc(CLUSTER);
      await fh.read(b, 0, CLUSTER, at);
      clusters.push(b);
    }
    return clusters;
  } finally {
    await fh.close();
  }
}

describe('byteEntropy', () => {
  it('measures random bytes at 8 bits per byte (bias corrected), at 64 KiB and at 4 KiB', () => {
    expect(byteEntropy(random(CLUSTER, 'a'), counts)).toBeCloseTo(8, 2);
    expect(byteEntropy(random(4096, 'b'), counts)).toBeCloseTo(8, 1);
    expect(byteEntropy(random(4096, 'b'), counts)).toBeGreaterThan(INCOMPRESSIBLE_BITS_PER_BYTE);
  });

  it('measures one repeated byte at 0 and two equally frequent ones at 1', () => {
    expect(byteEntropy(Buffer.alloc(CLUSTER, 7), counts)).toBe(0);
    const two = Buffer.alloc(CLUSTER);
    for (let i = 0; i < CLUSTER; i += 2) two[i] = 1;
    expect(byteEntropy(two, counts)).toBeCloseTo(1, 3);
  });
});

describe('looksIncompressible', () => {
  it('guesses random and already-compressed clusters incompressible, and deflate agrees', async () => {
    // A .gz file's inside: the start of a real program, gzipped.
    const gz = gzipSync(Buffer.concat(await nodeBinaryClusters(64)), { level: 9 });
    const clusters = [random(CLUSTER, 'c'), gz.subarray(0, CLUSTER)];
    for (const c of clusters) {
      expect(c.length).toBe(CLUSTER);
      expect(looksIncompressible(c, counts)).toBe(true);
      expect(qemuDeflate(c)).toBeGreaterThanOrEqual(c.length);
    }
  });

  it('guesses text, zeros, and random blocks repeated within deflate\'s window compressible', () => {
    expect(looksIncompressible(text(CLUSTER), counts)).toBe(false);
    expect(looksIncompressible(Buffer.alloc(CLUSTER), counts)).toBe(false);
    // A 2 KiB random block over and over: evenly spread bytes, yet half the cluster or less deflated.
    const block = random(2048, 'd');
    const repeated = Buffer.concat(Array.from({ length: CLUSTER / 2048 }, () => block));
    expect(qemuDeflate(repeated)).toBeLessThan(CLUSTER / 2);
    expect(looksIncompressible(repeated, counts)).toBe(false);
  });

  it('never guesses a cluster under 4 KiB: its histogram says too little', () => {
    expect(looksIncompressible(random(MIN_GUESS_BYTES - 1, 'e'), counts)).toBe(false);
    expect(looksIncompressible(random(512, 'f'), counts)).toBe(false);
  });

  it('on a real program\'s clusters, each one guessed incompressible deflates to 99 % of a cluster or more', async () => {
    const clusters = await nodeBinaryClusters(400);
    expect(clusters.length).toBeGreaterThan(100);
    let guessed = 0;
    let compressible = 0;
    for (const c of clusters) {
      const packed = qemuDeflate(c);
      if (packed < CLUSTER) compressible++;
      if (!looksIncompressible(c, counts)) continue;
      guessed++;
      expect(packed).toBeGreaterThanOrEqual(0.99 * CLUSTER);
    }
    // The binary is mostly code and data that compress: most clusters go to the compressor.
    expect(compressible).toBeGreaterThan(clusters.length / 2);
    expect(guessed).toBeLessThan(clusters.length / 2);
  });
});
