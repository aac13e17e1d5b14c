/** The protected ranges the layout readers report, on hand-made tables whose bytes are known. */
import { describe, expect, it } from 'vitest';
import { readLayout } from '../../../src/layout/read-layout.js';
import { MiB, buildGptDisk, flip, memReader, putMbrEntries, refreshGptHeaderCrc, view } from './fixtures.js';

const SIZE = 4 * MiB;
const LAST_LBA = SIZE / 512 - 1;
const sectors = (lba: number, count = 1) => ({ start: lba * 512, end: (lba + count) * 512 });

function gptDisk(): Uint8Array {
  return buildGptDisk({
    sizeBytes: SIZE,
    parts: [
      { index: 0, firstLba: 2048, lastLba: 4095 },
      { index: 1, firstLba: 4096, lastLba: 8000 },
    ],
  });
}

/** An MBR with one extended partition at LBA 2048 whose first EBR links `linkSectors` on. */
function extendedDisk(type: number, linkSectors: number, logicalSectors: number): Uint8Array {
  const disk = new Uint8Array(SIZE);
  putMbrEntries(disk, 0, [{ slot: 0, type, firstLba: 2048, sectors: 6144 }]);
  putMbrEntries(disk, 2048, [
    { slot: 0, type: 0x83, firstLba: 1, sectors: logicalSectors },
    { slot: 1, type: 0x05, firstLba: linkSectors, sectors: 1 },
  ]);
  return disk;
}

describe('protected ranges of an MBR', () => {
  it('are sector 0 and every EBR of the chain, the one inside logical 5 included', async () => {
    // Logical 5 spans LBA 2049–5000; the EBR of logical 6 sits at LBA 3000, inside it.
    const disk = extendedDisk(0x05, 952, 2952);
    putMbrEntries(disk, 3000, [{ slot: 0, type: 0x83, firstLba: 2001, sectors: 3000 }]);
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes.map((v) => v.name)).toEqual(['/dev/sda5', '/dev/sda6']);
    expect(layout.protectedRanges.ranges).toEqual([sectors(0), sectors(2048), sectors(3000)]);
  });

  it('include the sector that ends a chain without a signature', async () => {
    const layout = await readLayout(memReader(extendedDisk(0x0f, 500, 100)));
    expect(layout.protectedRanges.ranges).toEqual([sectors(0), sectors(2048), sectors(2548)]);
  });

  it('are empty without a partition table', async () => {
    expect((await readLayout(memReader(new Uint8Array(SIZE)))).protectedRanges.isEmpty).toBe(true);
  });
});

describe('protected ranges of a GPT', () => {
  it('are the protective MBR, both headers and both entry arrays', async () => {
    const layout = await readLayout(memReader(gptDisk()));
    expect(layout.protectedRanges.ranges).toEqual([sectors(0, 34), sectors(LAST_LBA - 32, 33)]);
  });

  it('follow a primary entry array moved inside a partition, which is noted, not refused', async () => {
    const disk = gptDisk();
    disk.copyWithin(3000 * 512, 2 * 512, 34 * 512);
    disk.fill(0, 2 * 512, 34 * 512);
    view(disk).setBigUint64(512 + 72, 3000n, true);
    refreshGptHeaderCrc(disk, 1);
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes).toHaveLength(2);
    expect(layout.notes.join('\n')).toMatch(/entry array at LBA 3000–3031 lies inside the usable LBAs 34–/);
    expect(layout.protectedRanges.ranges).toEqual([sectors(0, 2), sectors(3000, 32), sectors(LAST_LBA - 32, 33)]);
  });

  it('keep LBA 1 and the backup when the primary header is damaged', async () => {
    const disk = gptDisk();
    flip(disk, 512 + 60);
    const layout = await readLayout(memReader(disk));
    expect(layout.notes.join('\n')).toContain('used the backup');
    expect(layout.protectedRanges.ranges).toEqual([sectors(0, 2), sectors(LAST_LBA - 32, 33)]);
  });

  it('keep a damaged primary array whose header decoded', async () => {
    const disk = gptDisk();
    flip(disk, 2 * 512 + 200);
    const layout = await readLayout(memReader(disk));
    expect(layout.protectedRanges.ranges).toEqual([sectors(0, 34), sectors(LAST_LBA - 32, 33)]);
  });

  it('keep the old backup of a grown disk where the primary says it is', async () => {
    const grown = new Uint8Array(SIZE * 2);
    grown.set(gptDisk());
    const layout = await readLayout(memReader(grown));
    expect(layout.protectedRanges.ranges).toEqual([sectors(0, 34), sectors(LAST_LBA - 32, 33)]);
  });
});
