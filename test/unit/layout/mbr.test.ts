import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { isSparsifyError } from '../../../src/errors.js';
import { readLayout } from '../../../src/layout/read-layout.js';
import { MiB, memReader, putAscii, putFatBootSector, putMbrEntries, view } from './fixtures.js';

const SIZE = 8 * MiB; // 16384 sectors
const EXT_START = 6144;

/** Two primaries and an extended partition with three logical ones, as sfdisk lays them out. */
function mbrDisk(): Uint8Array {
  const disk = new Uint8Array(SIZE);
  putMbrEntries(disk, 0, [
    { slot: 0, type: 0x83, firstLba: 2048, sectors: 2048, status: 0x80 },
    { slot: 1, type: 0x0b, firstLba: 4096, sectors: 2048 },
    { slot: 2, type: 0x05, firstLba: EXT_START, sectors: 8192 },
  ]);
  // EBR data entries are relative to their EBR; links are relative to the extended partition.
  putMbrEntries(disk, EXT_START, [
    { slot: 0, type: 0x83, firstLba: 2048, sectors: 1024 },
    { slot: 1, type: 0x05, firstLba: 3072, sectors: 2048 },
  ]);
  putMbrEntries(disk, EXT_START + 3072, [
    { slot: 0, type: 0x82, firstLba: 1024, sectors: 1024 },
    { slot: 1, type: 0x05, firstLba: 5120, sectors: 3072 },
  ]);
  putMbrEntries(disk, EXT_START + 5120, [{ slot: 0, type: 0x83, firstLba: 1024, sectors: 2048 }]);
  return disk;
}

async function layoutError(disk: Uint8Array): Promise<Error> {
  const err = await readLayout(memReader(disk)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSparsifyError(err, 'BAD_LAYOUT')).toBe(true);
  return err as Error;
}

describe('readLayout on MBR', () => {
  it('lists primaries and logical partitions 5, 6, 7 but not the extended container', async () => {
    const layout = await readLayout(memReader(mbrDisk()));
    expect(layout.table).toBe('mbr');
    expect(layout.notes).toEqual([]);
    expect(layout.volumes.map((v) => [v.name, v.offsetBytes / 512, v.sizeBytes / 512, v.partitionType])).toEqual([
      ['/dev/sda1', 2048, 2048, '83'],
      ['/dev/sda2', 4096, 2048, '0b'],
      ['/dev/sda5', 8192, 1024, '83'],
      ['/dev/sda6', 10240, 1024, '82'],
      ['/dev/sda7', 12288, 2048, '83'],
    ]);
    expect(layout.volumes.every((v) => v.kind === 'partition')).toBe(true);
  });

  it('numbers logical partitions from 5 even with one primary', async () => {
    const disk = mbrDisk();
    disk.fill(0, 446, 446 + 32);
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes.map((v) => v.name)).toEqual(['/dev/sda5', '/dev/sda6', '/dev/sda7']);
  });

  it('accepts the Windows (0x0f) and Linux (0x85) extended types', async () => {
    for (const type of [0x0f, 0x85]) {
      const disk = mbrDisk();
      disk[446 + 2 * 16 + 4] = type;
      const layout = await readLayout(memReader(disk));
      expect(layout.volumes).toHaveLength(5);
    }
  });

  it('refuses an EBR chain that loops', async () => {
    const disk = mbrDisk();
    // The third EBR links back to the second.
    putMbrEntries(disk, EXT_START + 5120, [{ slot: 1, type: 0x05, firstLba: 3072, sectors: 2048 }]);
    expect((await layoutError(disk)).message).toBe(
      `EBR at LBA ${EXT_START + 3072} (byte ${(EXT_START + 3072) * 512}): the EBR chain loops back to it`,
    );
  });

  it('refuses an EBR that links to itself', async () => {
    const disk = mbrDisk();
    putMbrEntries(disk, EXT_START, [{ slot: 1, type: 0x05, firstLba: 0, sectors: 2048 }]);
    expect((await layoutError(disk)).message).toMatch(
      /EBR at LBA 6144, entry 2 \(byte \d+\): link to LBA 6144 lies outside/,
    );
  });

  it('refuses a logical partition that leaves the extended container', async () => {
    const disk = mbrDisk();
    putMbrEntries(disk, EXT_START + 5120, [{ slot: 0, type: 0x83, firstLba: 1024, sectors: 4096 }]);
    expect((await layoutError(disk)).message).toMatch(
      /^logical partition 7 in the EBR at LBA 11264, entry 1 \(byte 5767614\): LBA 12288–16383 lies outside its extended partition/,
    );
  });

  it('refuses a link that points beyond the extended container', async () => {
    const disk = mbrDisk();
    putMbrEntries(disk, EXT_START + 3072, [{ slot: 1, type: 0x05, firstLba: 9000, sectors: 10 }]);
    expect((await layoutError(disk)).message).toContain('link to LBA 15144 lies outside the extended partition');
  });

  it('refuses a primary partition beyond the end of the disk', async () => {
    const disk = mbrDisk();
    putMbrEntries(disk, 0, [{ slot: 3, type: 0x83, firstLba: 15000, sectors: 4000 }]);
    expect((await layoutError(disk)).message).toBe(
      'partition 4 in the MBR at LBA 0, entry 4 (byte 494): LBA 15000–18999 lies outside the disk after the MBR (LBA 1–16383)',
    );
  });

  it('refuses a primary partition over the MBR itself', async () => {
    const disk = mbrDisk();
    putMbrEntries(disk, 0, [{ slot: 3, type: 0x83, firstLba: 0, sectors: 10 }]);
    expect((await layoutError(disk)).message).toContain('lies outside the disk after the MBR');
  });

  it('refuses overlapping primaries', async () => {
    const disk = mbrDisk();
    putMbrEntries(disk, 0, [{ slot: 1, type: 0x0b, firstLba: 3000, sectors: 2048 }]);
    expect((await layoutError(disk)).message).toMatch(/partition 2 overlaps partition 1/);
  });

  it('refuses an extended partition that runs past a truncated image', async () => {
    const disk = mbrDisk().slice(0, 7000 * 512);
    expect((await layoutError(disk)).message).toMatch(/partition 3 in the MBR .* lies outside the disk/);
  });

  it('ends the chain at an EBR without a signature, with a note when it is not blank', async () => {
    const disk = mbrDisk();
    disk[(EXT_START + 5120) * 512 + 510] = 0;
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes.map((v) => v.name)).toEqual(['/dev/sda1', '/dev/sda2', '/dev/sda5', '/dev/sda6']);
    expect(layout.notes).toEqual(['EBR at LBA 11264 has no 0x55AA signature: the logical partitions end there']);
  });

  it('reads an empty extended partition as no logical partitions', async () => {
    const disk = mbrDisk();
    disk.fill(0, EXT_START * 512, SIZE);
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes.map((v) => v.name)).toEqual(['/dev/sda1', '/dev/sda2']);
    expect(layout.notes).toEqual([]);
  });
});

describe('readLayout without a partition table', () => {
  const whole = (size: number) => [{ name: '/dev/sda', offsetBytes: 0, sizeBytes: size, kind: 'whole-disk' }];

  it('takes a disk without 0x55AA as one volume', async () => {
    const layout = await readLayout(memReader(new Uint8Array(SIZE)));
    expect(layout).toEqual({
      table: 'none',
      diskSizeBytes: SIZE,
      sectorSizeBytes: 512,
      volumes: whole(SIZE),
      notes: [],
      protectedRanges: ExtentSet.empty,
    });
  });

  it('does not take a FAT boot sector on the whole disk for an MBR', async () => {
    const disk = new Uint8Array(SIZE);
    putFatBootSector(disk, {
      totalSectors: SIZE / 512,
      sectorsPerCluster: 4,
      reserved: 4,
      fatSectors: 16,
      rootEntries: 512,
    });
    // Boot code of a FAT VBR often lands where partition entries would be.
    disk.set([0x00, 0x20, 0x21, 0x00, 0x83, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x08], 446);
    const layout = await readLayout(memReader(disk));
    expect(layout.table).toBe('none');
    expect(layout.volumes).toEqual(whole(SIZE));
    expect(layout.notes).toEqual([
      'sector 0 is a FAT12 boot sector, not a partition table: the whole disk is one volume',
    ]);
  });

  it('does not take an NTFS boot sector on the whole disk for an MBR', async () => {
    const disk = new Uint8Array(SIZE);
    disk.set([0xeb, 0x52, 0x90], 0);
    putAscii(disk, 3, 'NTFS    ');
    view(disk).setUint16(11, 512, true);
    disk[13] = 8;
    view(disk).setBigUint64(0x28, BigInt(SIZE / 512 - 1), true);
    view(disk).setBigUint64(0x30, 4n, true);
    disk[0x40] = 0xf6; // 2^10-byte MFT records
    putMbrEntries(disk, 0, [{ slot: 0, type: 0x07, firstLba: 1, sectors: 100 }]);
    const layout = await readLayout(memReader(disk));
    expect(layout.table).toBe('none');
    expect(layout.notes[0]).toContain('NTFS boot sector');
  });

  it('does not take a sector with impossible boot indicators for an MBR', async () => {
    const disk = mbrDisk();
    disk[446] = 0x41;
    const layout = await readLayout(memReader(disk));
    expect(layout.table).toBe('none');
    expect(layout.notes[0]).toContain('boot indicators');
  });

  it('takes an MBR without partitions as no table', async () => {
    const disk = new Uint8Array(SIZE);
    putMbrEntries(disk, 0, []);
    const layout = await readLayout(memReader(disk));
    expect(layout.table).toBe('none');
    expect(layout.volumes).toEqual(whole(SIZE));
  });

  it('ignores a GPT header without a protective MBR, as Linux does', async () => {
    const disk = new Uint8Array(SIZE);
    putAscii(disk, 512, 'EFI PART');
    const layout = await readLayout(memReader(disk));
    expect(layout.table).toBe('none');
    expect(layout.notes[0]).toContain('no protective MBR');
  });

  it.each([0, 100, 511])('takes a %i-byte disk as one volume without reading past its end', async (size) => {
    const layout = await readLayout(memReader(new Uint8Array(size)));
    expect(layout.volumes).toEqual(whole(size));
  });

  it('throws BAD_LAYOUT for a protective MBR on a disk too small for a GPT', async () => {
    const disk = new Uint8Array(1024);
    putMbrEntries(disk, 0, [{ slot: 0, type: 0xee, firstLba: 1, sectors: 1 }]);
    await layoutError(disk);
  });
});
