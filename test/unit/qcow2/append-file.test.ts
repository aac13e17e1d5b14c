import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppendFile } from '../../../src/qcow2/append-file.js';

const MIB = 1024 * 1024;

/** `length` bytes that differ from their neighbours and from zero. */
function bytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = ((i * 31 + seed * 7) % 251) + 1;
  return out;
}

describe('AppendFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-append-file-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes appends at their offsets, zeros in the gaps, across batch boundaries', async () => {
    const path = join(dir, 'out');
    const expected = Buffer.alloc(6 * MIB + 4096);
    const pieces: Array<[number, Buffer]> = [
      [4096, bytes(100, 1)], // after the start: a gap of 4096 - 512 zeros
      [8192, bytes(3 * MIB, 2)], // larger than a batch
      [3 * MIB + 65536, bytes(5000, 3)],
      [5 * MIB, bytes(MIB + 4096, 4)], // a gap of almost 2 MiB, then a piece ending at the end
    ];
    {
      const fh = await open(path, 'w');
      try {
        const file = new AppendFile(fh, 512, (err) => err);
        for (const [offset, piece] of pieces) {
          await file.append(offset, piece);
          piece.copy(expected, offset);
        }
        expect(file.endBytes).toBe(expected.length);
        await file.drain();
      } finally {
        await fh.close();
      }
    }
    const written = await readFile(path);
    expect(written.length).toBe(expected.length);
    expect(written.subarray(512).equals(expected.subarray(512))).toBe(true);
  });

  it('copies what it is given: the caller may reuse its buffer once append returns', async () => {
    const path = join(dir, 'out');
    const reused = bytes(64 * 1024, 5);
    const first = Buffer.from(reused);
    const fh = await open(path, 'w');
    try {
      const file = new AppendFile(fh, 0, (err) => err);
      await file.append(0, reused);
      reused.fill(0xee);
      await file.append(reused.length, reused);
      await file.drain();
    } finally {
      await fh.close();
    }
    const written = await readFile(path);
    expect(written.subarray(0, first.length).equals(first)).toBe(true);
    expect(written.subarray(first.length).every((b) => b === 0xee)).toBe(true);
  });

  it('refuses an append before its end', async () => {
    const fh = await open(join(dir, 'out'), 'w');
    try {
      const file = new AppendFile(fh, 0, (err) => err);
      await file.append(100, bytes(10, 6));
      await expect(file.append(105, bytes(1, 7))).rejects.toThrow(RangeError);
    } finally {
      await fh.close();
    }
  });
});
