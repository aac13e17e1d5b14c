/**
 * The copier against real files: a 256 MiB raw input with scattered data copied into a new raw
 * output must compare identical under qemu-img, and the output must hold only the data blocks.
 */
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyBlocks } from '../../src/copy/copier.js';
import { openFileSource } from '../helpers/file-source.js';
import { openRawFileSink } from '../../src/copy/raw-file-sink.js';
import { makeContext } from '../../src/context.js';
import { ExtentSet } from '../../src/disk/extent-set.js';
import { runTool } from '../../src/util/run.js';
import { fillData, prng, randInt } from '../helpers/copy-fakes.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;

/** Writes a fully allocated raw file: zeros everywhere but scattered runs; returns its data bytes. */
async function writeInput(path: string): Promise<number> {
  const rand = prng(42);
  let dataBytes = 0;
  await using fh = await open(path, 'wx');
  for (let base = 0; base < SIZE; base += 8 * MiB) {
    const buf = Buffer.alloc(8 * MiB);
    for (let i = randInt(rand, 0, 6); i > 0; i--) {
      const start = randInt(rand, 0, 2048) * 4096;
      const end = Math.min(buf.length, start + randInt(rand, 1, 96) * 4096);
      fillData(buf, start, end, rand);
    }
    buf[randInt(rand, 0, buf.length)] = 0xa5; // one stray byte: its whole granule is data
    dataBytes += countDataGranules(buf) * 4096;
    await fh.write(buf, 0, buf.length, base);
  }
  return dataBytes;
}

function countDataGranules(buf: Buffer): number {
  let n = 0;
  for (let g = 0; g < buf.length; g += 4096) if (buf.subarray(g, g + 4096).some((b) => b !== 0)) n++;
  return n;
}

describeIntegration('copy a raw file into a sparse raw file', { tools: ['qemu-img'] }, () => {
  let dir: string;
  let input: string;
  let dataBytes: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-copy-'));
    input = join(dir, 'in.raw');
    dataBytes = await writeInput(input);
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('produces an identical image that holds only the data', async () => {
    const output = join(dir, 'out.raw');
    await using source = await openFileSource(input);
    {
      await using sink = await openRawFileSink(output, source.sizeBytes, { overwrite: false });
      const stats = await copyBlocks({ source, sink, skip: ExtentSet.empty });
      expect(stats.dataBytesWritten).toBe(dataBytes);
      expect(stats.readBytes).toBe(SIZE);
    }
    const { exitCode, stdout } = await runTool(makeContext(), 'qemu-img', ['compare', '-f', 'raw', '-F', 'raw', input, output]);
    expect(exitCode, stdout).toBe(0);
    const inputAllocated = (await stat(input)).blocks * 512;
    const outputAllocated = (await stat(output)).blocks * 512;
    expect(inputAllocated).toBeGreaterThanOrEqual(SIZE);
    expect(outputAllocated).toBeGreaterThanOrEqual(dataBytes);
    expect(outputAllocated).toBeLessThan(dataBytes + 4 * MiB);
  });

  it('leaves skipped ranges as holes that read as zero', async () => {
    const output = join(dir, 'out-skip.raw');
    const skip = ExtentSet.of(64 * MiB, 128 * MiB);
    await using source = await openFileSource(input);
    {
      await using sink = await openRawFileSink(output, source.sizeBytes, { overwrite: false });
      const stats = await copyBlocks({ source, sink, skip });
      expect(stats.skippedFreeBytes).toBe(128 * MiB);
      expect(stats.readBytes).toBe(SIZE - 128 * MiB);
    }
    // Outside the skip the images agree; inside it the output reads as zero.
    const ctx = makeContext();
    const window = (file: string, offset: number, length: number) =>
      `json:{"driver":"raw","offset":${offset},"size":${length},"file":{"driver":"file","filename":"${file}"}}`;
    for (const [offset, length] of [[0, 64 * MiB], [192 * MiB, 64 * MiB]] as const) {
      const r = await runTool(ctx, 'qemu-img', ['compare', window(input, offset, length), window(output, offset, length)]);
      expect(r.exitCode).toBe(0);
    }
    const zeros = await runTool(ctx, 'qemu-img', ['map', '--output=json', '-f', 'raw', output]);
    const skipped = (JSON.parse(zeros.stdout) as Array<{ start: number; length: number; data: boolean; zero: boolean }>)
      .filter((e) => e.start < 192 * MiB && e.start + e.length > 64 * MiB);
    expect(skipped.every((e) => e.zero && !e.data)).toBe(true);
  });
});
