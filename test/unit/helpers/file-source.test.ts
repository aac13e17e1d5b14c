import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openFileSource } from '../../helpers/file-source.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sparsify-copy-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('openFileSource', () => {
  it('reads exact ranges and refuses reads outside the file', async () => {
    const path = join(dir, 'in.raw');
    await writeFile(path, Buffer.from('0123456789'));
    await using source = await openFileSource(path);
    expect(source.sizeBytes).toBe(10);
    expect(source.canExtents).toBe(false);
    expect(Buffer.from(await source.read(3, 4)).toString()).toBe('3456');
    await expect(source.read(8, 3)).rejects.toThrow(RangeError);
    expect(await source.extents(0, 10)).toEqual([]);
  });
});
