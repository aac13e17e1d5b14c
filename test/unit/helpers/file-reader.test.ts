import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFileReader } from '../../helpers/file-reader.js';
import { isSparsifyError } from '../../../src/errors.js';

describe('openFileReader', () => {
  let dir: string;
  let path: string;
  const content = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 31) & 0xff);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-layout-reader-'));
    path = join(dir, 'disk.raw');
    await writeFile(path, content);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads exact ranges by position', async () => {
    await using reader = await openFileReader(path);
    expect(reader.sizeBytes).toBe(10_000);
    expect(await reader.read(9_990, 10)).toEqual(content.slice(9_990));
    expect(await reader.read(0, 3)).toEqual(content.slice(0, 3));
    expect(await reader.read(5_000, 0)).toEqual(new Uint8Array(0));
  });

  it('refuses a range outside the file', async () => {
    await using reader = await openFileReader(path);
    await expect(reader.read(9_995, 10)).rejects.toThrow(RangeError);
    await expect(reader.read(-1, 1)).rejects.toThrow(RangeError);
    await expect(reader.read(0.5, 1)).rejects.toThrow(RangeError);
  });

  it('throws BAD_IMAGE on a short read when the file shrank', async () => {
    const shrinking = join(dir, 'shrinking.raw');
    await writeFile(shrinking, content);
    await using reader = await openFileReader(shrinking);
    await truncate(shrinking, 4_000);
    const err = await reader.read(3_000, 2_000).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'BAD_IMAGE')).toBe(true);
    expect((err as Error).message).toContain('got 1000 of 2000 bytes');
  });

  it('says NOT_FOUND for a missing file', async () => {
    const err = await openFileReader(join(dir, 'missing.raw')).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'NOT_FOUND')).toBe(true);
  });

  it('refuses a directory', async () => {
    const err = await openFileReader(dir).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'UNSUPPORTED')).toBe(true);
  });

  it('closes once, however often it is disposed, and refuses reads afterwards', async () => {
    const reader = await openFileReader(path);
    await Promise.all([reader[Symbol.asyncDispose](), reader[Symbol.asyncDispose]()]);
    await reader[Symbol.asyncDispose]();
    await expect(reader.read(0, 1)).rejects.toThrow(/after it was closed/);
  });
});
