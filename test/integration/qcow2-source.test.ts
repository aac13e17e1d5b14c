/**
 * A qcow2 input read through its own tables (src/copy/qcow2-file-source.ts), judged by qemu: the
 * copy of images qemu-img made (default, tiny and huge clusters, version 2, compressed clusters,
 * "all zeros" clusters) must compare identical to the input, with the data read from the file
 * and only compressed clusters read through the export; images it leaves to qemu (a backing
 * file, a dirty one) are read through the export whole, and still copy identical.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { fillData, prng, randInt } from '../helpers/copy-fakes.js';
import { copyQcow2Through, type SourceCopy } from '../helpers/qcow2-source-copy.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const SIZE = 24 * MiB + 3 * 512;

/** Scattered data, zero runs between, a stray byte in otherwise zero space; compressible halves. */
function inputData(): Buffer {
  const rand = prng(9);
  const buf = Buffer.alloc(SIZE);
  for (let i = 0; i < 40; i++) {
    const start = randInt(rand, 0, SIZE / 512 - 1) * 512;
    const end = Math.min(SIZE, start + randInt(rand, 1, 600) * 512);
    if (i % 2) fillData(buf, start, end, rand);
    else buf.fill(`text ${i} `, start, end);
  }
  buf[SIZE - 1] = 0x5a;
  return buf;
}

describeIntegration('qcow2 input read through its own tables', { tools: ['qemu-img', 'qemu-io', 'qemu-storage-daemon'] }, () => {
  let dir: string;
  let raw: string;
  const ctx = makeContext();
  const qemuImg = (...args: string[]): string => execFileSync('qemu-img', args, { encoding: 'utf8' });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-qcow2-source-'));
    raw = join(dir, 'in.raw');
    await writeFile(raw, inputData());
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const copyOf = (image: string): Promise<SourceCopy> => copyQcow2Through(ctx, dir, image);

  it.each([
    ['64 KiB clusters (the default)', ['-o', 'cluster_size=65536']],
    ['512 B clusters: many L2 tables', ['-o', 'cluster_size=512']],
    ['2 MiB clusters, a partial last one', ['-o', 'cluster_size=2097152']],
    ['version 2 (compat=0.10)', ['-o', 'compat=0.10']],
  ])('%s: read from the file alone, identical', async (name, opts) => {
    const image = join(dir, `${name.replace(/\W+/g, '-')}.qcow2`);
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', ...opts, raw, image);
    const { fallback, reads } = await copyOf(image);
    expect(fallback).toEqual([]);
    expect(reads.count).toBe(0);
  });

  it('compressed clusters are read through the export, the rest from the file; "all zeros" clusters read as zero', async () => {
    const image = join(dir, 'compressed.qcow2');
    qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, image);
    // Uncompressed data over some compressed clusters, and clusters marked "all zeros" (bit 0).
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x61 1M 3M', '-c', 'write -z 2M 1M', '-c', 'write -z 8M 2M', '-c', 'write -z -u 12M 1M', image]);
    execFileSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x61 1M 3M', '-c', 'write -z 2M 1M', '-c', 'write -z 8M 2M', '-c', 'write -z 12M 1M', raw]);
    // qemu-img map gives no host offset for compressed data.
    const map = JSON.parse(qemuImg('map', '--output=json', image)) as Array<{ data: boolean; offset?: number }>;
    expect(map.some((e) => e.data && e.offset === undefined)).toBe(true);
    expect(map.some((e) => e.data && e.offset !== undefined)).toBe(true);
    const { fallback, reads } = await copyOf(image);
    expect(fallback).toEqual([]);
    expect(reads.count).toBeGreaterThan(0);
    expect(reads.bytes).toBeLessThan(SIZE - 3 * MiB);
    await writeFile(raw, inputData());
  });

  it('an image with a backing file, or a dirty one, is read through the export whole, still identical', async () => {
    const base = join(dir, 'base.qcow2');
    const top = join(dir, 'top.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', raw, base);
    qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x62 2M 1M', top]);
    const backed = await copyOf(top);
    expect(backed.fallback).toEqual([expect.stringMatching(/read through qemu: it has a backing file/)]);
    expect(backed.reads.bytes).toBeGreaterThan(0);

    const dirty = join(dir, 'dirty.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', 'lazy_refcounts=on', raw, dirty);
    // Set the dirty bit (incompatible feature bit 0) as a crash with lazy refcounts leaves it.
    const fd = openSync(dirty, 'r+');
    const bit = Buffer.alloc(8);
    bit.writeBigUInt64BE(1n);
    writeSync(fd, bit, 0, 8, 72);
    closeSync(fd);
    const result = await copyOf(dirty);
    expect(result.fallback).toEqual([expect.stringMatching(/incompatible features 0x1/)]);
  });
});
