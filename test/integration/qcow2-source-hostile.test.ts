/**
 * A qcow2 input is untrusted: what its tables say is checked before the direct reader
 * (src/copy/qcow2-file-source.ts) believes it. Entries that point outside the file are read
 * through the export (qemu reads them as zeros), never with pread past the end; metadata the
 * reader does not need (refcounts, an L1 table longer than the disk) changes nothing; images it
 * cannot read (extended L2, an external data file) go to qemu whole; a qemu writer cannot change
 * the input during the copy, and a file cut short under the copy fails the run. Every copy that
 * completes compares identical to the input as qemu reads it.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { fillData, prng } from '../helpers/copy-fakes.js';
import { copyQcow2Through } from '../helpers/qcow2-source-copy.js';
import { describeIntegration } from '../helpers/require.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CS = 64 * KiB;
const SIZE = 8 * MiB;
/** Bits 9–55 of an L1 or L2 entry: the host offset. */
const OFFSET_MASK = 0x00fffffffffffe00n;
const COPIED = 1n << 63n;

function readU64(file: string, at: number): bigint {
  const fd = openSync(file, 'r');
  const b = Buffer.alloc(8);
  readSync(fd, b, 0, 8, at);
  closeSync(fd);
  return b.readBigUInt64BE();
}

function writeBytes(file: string, at: number, bytes: Buffer): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, bytes, 0, bytes.length, at);
  closeSync(fd);
}

function writeU64(file: string, at: number, value: bigint): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  writeBytes(file, at, b);
}

/** Where the L2 entry of guest byte `guest` lies in the file (64 KiB clusters, L1 entry present). */
function l2EntryAddress(image: string, guest: number): number {
  const l1 = Number(readU64(image, 40));
  const perTable = CS / 8;
  const cluster = Math.floor(guest / CS);
  const l2 = Number(readU64(image, l1 + Math.floor(cluster / perTable) * 8) & OFFSET_MASK);
  return l2 + (cluster % perTable) * 8;
}

describeIntegration('a hostile or unusual qcow2 input, read through its own tables', { tools: ['qemu-img', 'qemu-io', 'qemu-storage-daemon'] }, () => {
  let dir: string;
  let raw: string;
  const ctx = makeContext();
  const qemuImg = (...args: string[]): string => execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  /** A fresh qcow2 (64 KiB clusters) of the random input: every cluster holds data. */
  function image(name: string, ...opts: string[]): string {
    const path = join(dir, `${name}.qcow2`);
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${CS}`, ...opts, raw, path);
    return path;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-qcow2-hostile-'));
    raw = join(dir, 'in.raw');
    const data = Buffer.alloc(SIZE);
    fillData(data, 0, SIZE, prng(5));
    await writeFile(raw, data);
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('an L2 entry pointing past the end of the file: that cluster alone is read through qemu (zeros), identical', async () => {
    const path = image('l2-past-eof');
    const pastEnd = BigInt((Math.ceil(statSync(path).size / CS) + 100) * CS);
    writeU64(path, l2EntryAddress(path, 3 * CS), COPIED | pastEnd);
    const { fallback, reads } = await copyQcow2Through(ctx, dir, path);
    expect(fallback).toEqual([]);
    expect(reads).toEqual({ count: 1, bytes: CS });
  });

  it('an L1 entry pointing past the end of the file: its range is read through qemu (zeros), identical', async () => {
    const path = image('l1-past-eof');
    writeU64(path, Number(readU64(path, 40)), COPIED | (1n << 50n));
    const { fallback, reads } = await copyQcow2Through(ctx, dir, path);
    expect(fallback).toEqual([]);
    // One L2 table of 64 KiB clusters covers 512 MiB: the whole 8 MiB disk.
    expect(reads.bytes).toBe(SIZE);
  });

  it('a data cluster whose refcount is 0 still reads as its L2 entry says, from the file, identical', async () => {
    const path = image('refcount-zero');
    const host = Number(readU64(path, l2EntryAddress(path, 5 * CS)) & OFFSET_MASK);
    const block = Number(readU64(path, Number(readU64(path, 48))) & OFFSET_MASK);
    writeBytes(path, block + (host / CS) * 2, Buffer.alloc(2)); // refcount_order 4: 16-bit entries
    expect(() => qemuImg('check', path)).toThrow(/refcount=0/);
    const { fallback, reads } = await copyQcow2Through(ctx, dir, path);
    expect(fallback).toEqual([]);
    expect(reads.count).toBe(0);
  });

  it('an L1 table longer than the disk needs (a shrunk image): read from the file alone, identical', async () => {
    const path = image('shrunk', '-o', 'cluster_size=512');
    qemuImg('resize', '-f', 'qcow2', '--shrink', path, String(SIZE / 4));
    // 512 B clusters: one L2 table covers 32 KiB, so 2 MiB needs 64 L1 entries.
    expect(Number(readU64(path, 32) & 0xffffffffn)).toBeGreaterThan(64);
    const { fallback, reads } = await copyQcow2Through(ctx, dir, path);
    expect(fallback).toEqual([]);
    expect(reads.count).toBe(0);
  });

  it.each([
    ['extended L2 entries', ['-o', 'extended_l2=on'], /incompatible features 0x10/],
    ['an external data file', ['-o', 'data_file=DIR/external.data'], /external data file/],
  ])('an image with %s is read through qemu whole, identical', async (name, opts, reason) => {
    const path = image(name.replace(/\W+/g, '-'), ...opts.map((o) => o.replace('DIR', dir)));
    const { fallback, reads } = await copyQcow2Through(ctx, dir, path);
    expect(fallback).toEqual([expect.stringMatching(reason)]);
    expect(reads.bytes).toBe(SIZE);
  });

  it('while the input is served, a qemu writer cannot open it: the tables stay as planned', async () => {
    const path = image('locked');
    const { fallback } = await copyQcow2Through(ctx, dir, path, async () => {
      expect(() => execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x33 0 64k', path], { stdio: ['ignore', 'pipe', 'pipe'] })).toThrow(/lock/);
    });
    expect(fallback).toEqual([]);
  });

  it('a file cut short under the copy (a writer that ignores the lock) fails the copy, nothing read past the end', async () => {
    const path = image('cut-short');
    // Keep the header, L1 and refcount tables: the L2 tables and data are gone.
    const cut = copyQcow2Through(ctx, dir, path, () => truncate(path, 4 * CS));
    await expect(cut).rejects.toThrow(/changed during the run \(it became shorter\)/);
  });
});
