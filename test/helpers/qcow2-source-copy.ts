/**
 * Copies a qcow2 image through the copier's source (src/copy/copy-source.ts) into a raw file, as
 * copy mode does with no overlay, counting what reached the NBD export, and judges the copy with
 * `qemu-img compare`: qemu reads the input the way the export serves it.
 */
import { execFileSync } from 'node:child_process';
import { expect } from 'vitest';
import type { RunContext } from '../../src/context.js';
import { copyBlocks } from '../../src/copy/copier.js';
import { openCopySource } from '../../src/copy/copy-source.js';
import { openRawFileSink } from '../../src/copy/raw-file-sink.js';
import { ExtentSet } from '../../src/disk/extent-set.js';
import type { BlockSource } from '../../src/disk/types.js';
import { openNbdClient } from '../../src/nbd/client.js';
import { serveImage } from '../../src/qemu/storage-daemon.js';

/** Reads that reached the export: how many, how many bytes. */
export interface ExportReads {
  count: number;
  bytes: number;
}

/** `device` with its reads counted. */
export function counted(device: BlockSource): { source: BlockSource; reads: ExportReads } {
  const reads = { count: 0, bytes: 0 };
  const note = (n: number): void => {
    reads.count++;
    reads.bytes += n;
  };
  return {
    reads,
    source: {
      sizeBytes: device.sizeBytes,
      canExtents: device.canExtents,
      extents: (o, l) => device.extents(o, l),
      read: (o, l) => (note(l), device.read(o, l)),
      readInto: (o, dest) => (note(dest.byteLength), device.readInto ? device.readInto(o, dest) : Promise.reject(new Error('no readInto'))),
    },
  };
}

/** What one copy did: the fallback reasons given, and the reads that went through the export. */
export interface SourceCopy {
  readonly fallback: string[];
  readonly reads: ExportReads;
}

/**
 * Serves `image` read-only, copies it through openCopySource into `${image}.out` (raw), and
 * expects qemu-img compare to find them identical. `beforeCopy` runs with the image served and
 * the source open, just before the copy.
 */
export async function copyQcow2Through(
  ctx: RunContext,
  dir: string,
  image: string,
  beforeCopy: () => Promise<void> = async () => {},
): Promise<SourceCopy> {
  const fallback: string[] = [];
  await using served = await serveImage(ctx, { file: image, format: 'qcow2', readOnly: true, discard: false, dir });
  await using nbd = await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName, signal: ctx.signal });
  const { source: device, reads } = counted(nbd);
  const out = `${image}.out`;
  {
    await using source = await openCopySource(device, { path: image, format: 'qcow2' }, (why) => fallback.push(why));
    await using sink = await openRawFileSink(out, source.sizeBytes, { overwrite: true });
    await beforeCopy();
    await copyBlocks({ source, sink, skip: ExtentSet.empty });
  }
  expect(execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', image, out], { encoding: 'utf8' })).toMatch(/identical/);
  return { fallback, reads };
}
