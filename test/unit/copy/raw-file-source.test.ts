import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyBlocks } from '../../../src/copy/copier.js';
import { openCopySource } from '../../../src/copy/copy-source.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { isSparsifyError } from '../../../src/errors.js';
import { MemorySource, RecordingSink } from '../../helpers/memory-block.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sparsify-source-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const SIZE = 3 * 1024 * 1024 + 4096;

/** The file holds one pattern, the "export" another: a read shows which one answered. */
async function setup(fileBytes = SIZE): Promise<{ path: string; file: Buffer; device: MemorySource }> {
  const file = Buffer.alloc(fileBytes);
  for (let i = 0; i < fileBytes; i += 4096) file.fill((i / 4096) % 251 + 1, i, Math.min(i + 4096, fileBytes));
  file.fill(0, 1024 * 1024, 2 * 1024 * 1024);
  const path = join(dir, 'in.raw');
  await writeFile(path, file);
  const device = new MemorySource(Buffer.alloc(SIZE, 0xaa), { zeroRanges: [{ start: 1024 * 1024, end: 2 * 1024 * 1024 }] });
  return { path, file, device };
}

describe('openCopySource', () => {
  it('reads a raw input from its file, with the zero extents of the export, and copies it exactly', async () => {
    const { path, file, device } = await setup();
    await using source = await openCopySource(device, { path, format: 'raw' });
    expect(Buffer.from(await source.read(4096, 8192)).equals(file.subarray(4096, 12288))).toBe(true);
    const sink = new RecordingSink(SIZE);
    const stats = await copyBlocks({ source, sink, skip: ExtentSet.from([]) });
    expect(Buffer.from(sink.image).equals(file)).toBe(true);
    expect(stats.zeroExtentBytes).toBe(1024 * 1024);
    expect(device.reads).toEqual([]);
    expect(device.extentsCalls).toBeGreaterThan(0);
  });

  it('reads through the export for another format, or a file whose size differs from the export', async () => {
    const { path, device } = await setup();
    for (const input of [{ path, format: 'qcow2' }, undefined]) {
      await using source = await openCopySource(device, input);
      expect(Buffer.from(await source.read(0, 16)).equals(Buffer.alloc(16, 0xaa))).toBe(true);
    }
    await truncate(path, SIZE - 512);
    await using source = await openCopySource(device, { path, format: 'raw' });
    expect(Buffer.from(await source.read(0, 16)).equals(Buffer.alloc(16, 0xaa))).toBe(true);
  });

  it('fails with IN_USE when the input file shrinks during the copy', async () => {
    const { path, device } = await setup();
    await using source = await openCopySource(device, { path, format: 'raw' });
    await truncate(path, 4096);
    const err = await source.read(SIZE - 8192, 8192).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'IN_USE')).toBe(true);
    expect((err as Error).message).toMatch(/in\.raw changed during the run/);
  });
});
