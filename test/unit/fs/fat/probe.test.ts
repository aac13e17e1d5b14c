import { describe, expect, it } from 'vitest';
import { findFatLabelEntry, parseFatBootSector } from '../../../../src/fs/fat/probe.js';
import { parseNtfsBootSector } from '../../../../src/fs/ntfs/probe.js';
import { putAscii, putFatBootSector, view } from '../../layout/fixtures.js';

/** A boot sector whose data area holds exactly `clusters` one-sector clusters. */
function bootSector(clusters: number, fat32 = false): Uint8Array {
  const reserved = fat32 ? 32 : 1;
  const rootEntries = fat32 ? 0 : 512;
  const fatSectors = Math.ceil(((clusters + 2) * (fat32 ? 4 : 2)) / 512);
  const totalSectors = reserved + 2 * fatSectors + rootEntries / 16 + clusters;
  const disk = new Uint8Array((reserved + 2 * fatSectors) * 512 + 512);
  putFatBootSector(disk, { totalSectors, sectorsPerCluster: 1, reserved, fatSectors, rootEntries, fat32 });
  return disk.subarray(0, 512);
}

describe('parseFatBootSector', () => {
  it.each([
    [4084, false, 'FAT12'],
    [4085, false, 'FAT16'],
    [65524, false, 'FAT16'],
    [65525, true, 'FAT32'],
  ] as const)(
    'types %i clusters (FAT32 BPB: %s) as %s, by the count of clusters alone (fatgen103 §3.5)',
    (clusters, fat32, type) => {
      expect(parseFatBootSector(bootSector(clusters, fat32))?.fatType).toBe(type);
    },
  );

  it('rejects a FAT32 cluster count with a FAT16 root directory', () => {
    expect(parseFatBootSector(bootSector(65525, false))).toBeUndefined();
  });

  it.each([
    ['no jump instruction', (s: Uint8Array) => s.set([0x33, 0xc0, 0x8e], 0)],
    ['513 bytes per sector', (s: Uint8Array) => view(s).setUint16(11, 513, true)],
    ['3 sectors per cluster', (s: Uint8Array) => (s[13] = 3)],
    ['no reserved sectors', (s: Uint8Array) => view(s).setUint16(14, 0, true)],
    ['no FATs', (s: Uint8Array) => (s[16] = 0)],
    ['media byte 0x00', (s: Uint8Array) => (s[21] = 0)],
    ['no sectors', (s: Uint8Array) => view(s).setUint16(19, 0, true)],
    ['metadata larger than the volume', (s: Uint8Array) => view(s).setUint16(22, 60000, true)],
  ])('rejects %s', (_what, edit) => {
    const sector = bootSector(10000).slice();
    edit(sector);
    expect(parseFatBootSector(sector)).toBeUndefined();
  });

  it('reads the volume id and label only when the extended boot signature is there', () => {
    const sector = bootSector(10000).slice();
    expect(parseFatBootSector(sector)).toMatchObject({ volumeId: 0x1234abcd });
    sector[38] = 0;
    expect(parseFatBootSector(sector)?.volumeId).toBeUndefined();
  });

  it('is not fooled by an NTFS boot sector, and NTFS is not fooled by FAT', () => {
    const ntfs = new Uint8Array(512);
    ntfs.set([0xeb, 0x52, 0x90], 0);
    putAscii(ntfs, 3, 'NTFS    ');
    view(ntfs).setUint16(11, 512, true);
    ntfs[13] = 8;
    ntfs[21] = 0xf8;
    ntfs[0x40] = 0xf6;
    expect(parseFatBootSector(ntfs)).toBeUndefined();
    expect(parseNtfsBootSector(ntfs)).toMatchObject({ clusterBytes: 4096, mftRecordBytes: 1024 });
    expect(parseNtfsBootSector(bootSector(10000))).toBeUndefined();
  });
});

describe('findFatLabelEntry', () => {
  it('skips long-name and deleted entries and stops at the end marker', () => {
    const dir = new Uint8Array(32 * 4);
    dir[11] = 0x0f; // a long-name entry has all of RO, HIDDEN, SYSTEM, VOLUME_ID
    putAscii(dir, 0, 'ALONGNAME  ');
    putAscii(dir, 32, 'GONE       ');
    dir[32] = 0xe5;
    dir[32 + 11] = 0x08;
    expect(findFatLabelEntry(dir)).toBeUndefined();
    putAscii(dir, 96, 'AFTEREND   ');
    dir[96 + 11] = 0x08;
    expect(findFatLabelEntry(dir)).toBeUndefined();
    putAscii(dir, 64, 'MY DISK    ');
    dir[64 + 11] = 0x08;
    expect(findFatLabelEntry(dir)).toBe('MY DISK');
  });
});
