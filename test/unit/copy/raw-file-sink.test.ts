import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openRawFileSink } from '../../../src/copy/raw-file-sink.js';
import { isSparsifyError } from '../../../src/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sparsify-copy-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('openRawFileSink', () => {
  it('creates a sparse file of the size asked that reads back what was written', async () => {
    const path = join(dir, 'out.raw');
    {
      await using sink = await openRawFileSink(path, 8 * 1024 * 1024, { overwrite: false });
      expect(sink.zeroInitialized).toBe(true);
      await sink.write(4 * 1024 * 1024, Buffer.from('hello'));
      await sink.flush();
    }
    const st = await stat(path);
    expect(st.size).toBe(8 * 1024 * 1024);
    expect(st.blocks * 512).toBeLessThanOrEqual(64 * 1024);
    const data = await readFile(path);
    expect(data.subarray(4 * 1024 * 1024, 4 * 1024 * 1024 + 5).toString()).toBe('hello');
  });

  it('refuses an existing output unless told to overwrite, which truncates it', async () => {
    const path = join(dir, 'out.raw');
    await writeFile(path, Buffer.alloc(4096, 0xff));
    const err = await openRawFileSink(path, 4096, { overwrite: false }).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'OUTPUT_EXISTS')).toBe(true);
    {
      await using sink = await openRawFileSink(path, 10_000, { overwrite: true });
      expect(sink.sizeBytes).toBe(10_000);
    }
    const data = await readFile(path);
    expect(data.length).toBe(10_000);
    expect(data.every((b) => b === 0)).toBe(true);
  });

  it('writes real zeros for writeZeroes, and refuses requests past the end', async () => {
    const path = join(dir, 'out.raw');
    await using sink = await openRawFileSink(path, 3_000_000, { overwrite: false });
    await sink.write(0, Buffer.alloc(3_000_000, 7));
    await sink.writeZeroes(100, 2_500_000, true);
    const data = await readFile(path);
    expect(data.subarray(100, 2_500_100).every((b) => b === 0)).toBe(true);
    expect([data[99], data[2_500_100]]).toEqual([7, 7]);
    await expect(sink.write(2_999_999, Buffer.alloc(2))).rejects.toThrow(RangeError);
  });

  it('remove() deletes the partial output; closing twice is harmless', async () => {
    const path = join(dir, 'out.raw');
    const sink = await openRawFileSink(path, 4096, { overwrite: false });
    await sink.remove();
    await sink[Symbol.asyncDispose]();
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
