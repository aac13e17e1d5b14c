/**
 * The compressed-qcow2 writer (src/qcow2/) judged by qemu itself: images of known data, copied
 * by the real copier from a raw file, must pass `qemu-img check` and read back identical to the
 * raw file (`qemu-img compare`), with zero clusters unallocated and incompressible ones stored
 * as they are, for zlib and zstd, small and large clusters, several L2 tables and refcount blocks.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyBlocks } from '../../src/copy/copier.js';
import { ExtentSet } from '../../src/disk/extent-set.js';
import { openCompressedQcow2Sink } from '../../src/qcow2/compressed-sink.js';
import { openPlainQcow2Sink } from '../../src/qcow2/plain-sink.js';
import type { CompressionType } from '../../src/qcow2/format.js';
import { openFileSource } from '../helpers/file-source.js';
import { describeIntegration } from '../helpers/require.js';

/**
 * What a cluster of the test image holds. `far` repeats an 8 KiB random block: only a compressor
 * that looks back more than 4 KiB finds the repeats, which qemu's zlib (window bits -12) must not.
 */
type Kind = 'text' | 'random' | 'zero' | 'pattern' | 'far';

interface Case {
  readonly name: string;
  readonly clusterBits: number;
  /** Whole clusters, by kind; the image ends with `tailBytes` more of text. */
  readonly clusters: readonly Kind[];
  readonly tailBytes: number;
}

const repeat = (kinds: Kind[], times: number): Kind[] => Array.from({ length: times }, () => kinds).flat();

const CASES: Case[] = [
  { name: '64 KiB clusters, every kind, a partial last cluster', clusterBits: 16, clusters: ['text', 'random', 'zero', 'zero', 'pattern', 'far', 'text', 'random', 'text'], tailBytes: 7 * 512 },
  // 512 B clusters: an L2 table maps 32 KiB and a refcount block counts 128 KiB of file.
  { name: '512 B clusters, 40 L2 tables and several refcount blocks', clusterBits: 9, clusters: repeat(['text', 'random', 'zero', 'text', 'pattern'], 500), tailBytes: 0 },
  // 4 KiB clusters: an L2 table maps 2 MiB; half the image is a run of zeros, left unmapped.
  { name: '4 KiB clusters, more than one L2 table, a long zero run', clusterBits: 12, clusters: [...repeat(['text', 'random'], 300), ...repeat(['zero'], 600), ...repeat(['pattern', 'text'], 200)], tailBytes: 1024 },
  { name: '2 MiB clusters, size not a cluster multiple', clusterBits: 21, clusters: ['text', 'random', 'far'], tailBytes: 300 * 1024 },
];

const TYPES: CompressionType[] = ['zlib', 'zstd'];

describeIntegration('compressed qcow2 writer, checked by qemu-img', { tools: ['qemu-img'] }, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-qcow2-writer-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(CASES.flatMap((c) => TYPES.map((t) => [c.name, t, c] as const)))('%s, %s', async (_name, type, c) => {
    const cs = 2 ** c.clusterBits;
    const raw = join(dir, `${c.clusterBits}-${type}.raw`);
    const image = join(dir, `${c.clusterBits}-${type}.qcow2`);
    const data = imageData(c);
    await writeFile(raw, data);

    {
      await using source = await openFileSource(raw);
      await using sink = await openCompressedQcow2Sink(image, data.length, { clusterBits: c.clusterBits, compressionType: type });
      await copyBlocks({ source, sink, skip: ExtentSet.from([]), flush: false });
      await sink.finish();
    }

    const check = checkedAgainst(raw, image);

    const kinds = [...c.clusters, ...(c.tailBytes ? (['text'] as Kind[]) : [])];
    const dataClusters = kinds.filter((k) => k !== 'zero').length;
    // Incompressible, stored as it is: random data, and for zlib's 4 KiB window the far repeats.
    const stored = kinds.filter((k) => k === 'random' || (k === 'far' && type === 'zlib')).length;
    expect(check['allocated-clusters']).toBe(dataClusters);
    expect(check['compressed-clusters']).toBe(dataClusters - stored);

    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', image], { encoding: 'utf8' })) as {
      'cluster-size': number;
      'virtual-size': number;
      'format-specific': { data: { 'compression-type': string; compat: string } };
    };
    expect(info['cluster-size']).toBe(cs);
    expect(info['virtual-size']).toBe(data.length);
    expect(info['format-specific'].data['compression-type']).toBe(type);
    expect(info['format-specific'].data.compat).toBe('1.1');
  }, 120_000);

  // The uncompressed writer: every cluster with data stored as it is, zero clusters unallocated.
  it.each(CASES.map((c) => [c.name, c] as const))('%s, uncompressed', async (_name, c) => {
    const cs = 2 ** c.clusterBits;
    const raw = join(dir, `${c.clusterBits}-plain.raw`);
    const image = join(dir, `${c.clusterBits}-plain.qcow2`);
    const data = imageData(c);
    await writeFile(raw, data);
    {
      await using source = await openFileSource(raw);
      await using sink = await openPlainQcow2Sink(image, data.length, { clusterBits: c.clusterBits, compressionType: 'zlib' });
      await copyBlocks({ source, sink, skip: ExtentSet.from([]) });
      await sink.finish();
    }
    const check = checkedAgainst(raw, image);
    // The copier's zero scan works in 4 KiB granules (or clusters, when larger): smaller clusters
    // that are zero inside a granule with data are written too.
    const granule = Math.max(cs, 4096);
    let written = 0;
    for (let at = 0; at < data.length; at += granule) {
      if (data.subarray(at, at + granule).some((b) => b !== 0)) written += Math.ceil(Math.min(granule, data.length - at) / cs);
    }
    expect(check['allocated-clusters']).toBe(written);
    expect(check['compressed-clusters'] ?? 0).toBe(0);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', image], { encoding: 'utf8' })) as { 'cluster-size': number; 'virtual-size': number };
    expect(info['cluster-size']).toBe(cs);
    expect(info['virtual-size']).toBe(data.length);
  }, 120_000);
});

/** `qemu-img check` of `image` (which must be clean) after `qemu-img compare` with `raw` (which must agree). */
function checkedAgainst(raw: string, image: string): Record<string, number> {
  const check = JSON.parse(execFileSync('qemu-img', ['check', '--output=json', '-f', 'qcow2', image], { encoding: 'utf8' })) as Record<string, number>;
  expect(check['corruptions'] ?? 0).toBe(0);
  expect(check['leaks'] ?? 0).toBe(0);
  expect(check['check-errors']).toBe(0);
  execFileSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, image]); // throws on a difference
  return check;
}

/** The test image: each cluster filled by its kind, then the tail; the same bytes every run. */
function imageData(c: Case): Buffer {
  const cs = 2 ** c.clusterBits;
  const out = Buffer.alloc(c.clusters.length * cs + c.tailBytes);
  c.clusters.forEach((kind, i) => fill(out.subarray(i * cs, (i + 1) * cs), kind, i));
  fill(out.subarray(c.clusters.length * cs), 'text', c.clusters.length);
  return out;
}

function fill(target: Buffer, kind: Kind, seed: number): void {
  if (kind === 'zero') return;
  if (kind === 'pattern') {
    target.fill(seed % 255 + 1);
    return;
  }
  if (kind === 'far') {
    const block = Buffer.alloc(8192);
    fill(block, 'random', seed);
    for (let at = 0; at < target.length; at += block.length) block.copy(target, at);
    return;
  }
  const pieces: Buffer[] = [];
  for (let n = 0, length = 0; length < target.length; n++) {
    const digest = createHash('sha256').update(`${seed}:${n}`).digest();
    const piece = kind === 'random' ? digest : Buffer.from(`line ${seed}.${n}: the quick brown fox ${digest[0]! % 7} jumps\n`);
    pieces.push(piece);
    length += piece.length;
  }
  Buffer.concat(pieces).copy(target, 0, 0, target.length);
}
