/**
 * readFatFreeMap on FAT12/16/32 volumes built here, byte by byte, after fatgen103: only the
 * boot sector, the FSInfo sector and the FATs are stored; the data area reads as zeros.
 */
import { describe, expect, it } from 'vitest';
import type { BlockReader } from '../../../../src/disk/types.js';
import { isSparsifyError } from '../../../../src/errors.js';
import { readFatFreeMap } from '../../../../src/fs/fat/free-map.js';
import type { FreeMap } from '../../../../src/fs/types.js';
import { prng } from '../../../helpers/copy-fakes.js';
import { memoryReader } from '../../../helpers/mem-reader.js';

type FatType = 'FAT12' | 'FAT16' | 'FAT32';
const SECTOR = 512;
const BITS: Record<FatType, number> = { FAT12: 12, FAT16: 16, FAT32: 32 };
const EOC: Record<FatType, number> = { FAT12: 0xfff, FAT16: 0xffff, FAT32: 0x0fffffff };
const BAD: Record<FatType, number> = { FAT12: 0xff7, FAT16: 0xfff7, FAT32: 0x0ffffff7 };
/** The smallest count of clusters of each type (fatgen103 §3.5). */
const MIN_CLUSTERS: Record<FatType, number> = { FAT12: 1, FAT16: 4085, FAT32: 65525 };

interface FatOptions {
  readonly type: FatType;
  readonly clusters?: number;
  readonly sectorsPerCluster?: number;
  readonly fatCount?: number;
  /** Sectors after the last cluster, fewer than a cluster (never free). */
  readonly tailSectors?: number;
  /** Bytes of volume beyond the filesystem. */
  readonly slackBytes?: number;
}

/** A synthetic FAT volume and what a test needs to know about its layout. */
class FatVolume implements BlockReader {
  readonly type: FatType;
  readonly clusters: number;
  readonly clusterBytes: number;
  readonly fatCount: number;
  readonly fatSectors: number;
  readonly reservedSectors: number;
  readonly dataOffsetBytes: number;
  readonly sizeBytes: number;
  /** Boot sector, FSInfo, FATs, root directory: everything before the data area. */
  readonly meta: Uint8Array;

  constructor(o: FatOptions) {
    this.type = o.type;
    this.clusters = o.clusters ?? MIN_CLUSTERS[o.type] + 100;
    const spc = o.sectorsPerCluster ?? 1;
    this.clusterBytes = spc * SECTOR;
    this.fatCount = o.fatCount ?? 2;
    const fat32 = o.type === 'FAT32';
    this.reservedSectors = fat32 ? 32 : 1;
    const rootSectors = fat32 ? 0 : 32;
    this.fatSectors = Math.ceil(Math.ceil(((this.clusters + 2) * BITS[o.type]) / 8) / SECTOR);
    const dataSector = this.reservedSectors + this.fatCount * this.fatSectors + rootSectors;
    const totalSectors = dataSector + this.clusters * spc + (o.tailSectors ?? 0);
    this.dataOffsetBytes = dataSector * SECTOR;
    this.sizeBytes = totalSectors * SECTOR + (o.slackBytes ?? 0);
    this.meta = new Uint8Array(this.dataOffsetBytes);
    this.putBootSector(totalSectors, spc, rootSectors * 16);
    for (let copy = 0; copy < this.fatCount; copy++) {
      this.setEntry(0, 0x0fffff00 | 0xf8, copy);
      this.setEntry(1, EOC[o.type], copy);
    }
    if (fat32) this.putFsInfo(0xffffffff);
    this.setEntry(2, EOC[o.type]); // the FAT32 root directory, or a one-cluster file
  }

  private putBootSector(totalSectors: number, spc: number, rootEntries: number): void {
    const s = this.meta;
    const v = this.view(0);
    s.set([0xeb, 0x58, 0x90], 0);
    v.setUint16(11, SECTOR, true);
    s[13] = spc;
    v.setUint16(14, this.reservedSectors, true);
    s[16] = this.fatCount;
    v.setUint16(17, rootEntries, true);
    if (totalSectors < 0x10000) v.setUint16(19, totalSectors, true);
    else v.setUint32(32, totalSectors, true);
    s[21] = 0xf8;
    if (this.type === 'FAT32') {
      v.setUint32(36, this.fatSectors, true);
      v.setUint32(44, 2, true);
      v.setUint16(48, 1, true);
      s[66] = 0x29;
    } else {
      v.setUint16(22, this.fatSectors, true);
      s[38] = 0x29;
    }
    s[510] = 0x55;
    s[511] = 0xaa;
  }

  putFsInfo(freeCount: number): void {
    const v = this.view(SECTOR);
    v.setUint32(0, 0x41615252, true);
    v.setUint32(484, 0x61417272, true);
    v.setUint32(488, freeCount, true);
    v.setUint32(508, 0xaa550000, true);
  }

  view(offset = 0): DataView {
    return new DataView(this.meta.buffer, this.meta.byteOffset + offset);
  }

  fatOffset(copy: number): number {
    return (this.reservedSectors + copy * this.fatSectors) * SECTOR;
  }

  /** Writes FAT entry `cluster` in one copy, or in every copy when `copy` is undefined. */
  setEntry(cluster: number, value: number, copy?: number): void {
    if (copy === undefined) {
      for (let c = 0; c < this.fatCount; c++) this.setEntry(cluster, value, c);
      return;
    }
    const base = this.fatOffset(copy);
    if (this.type === 'FAT32') this.view(base).setUint32(cluster * 4, value >>> 0, true);
    else if (this.type === 'FAT16') this.view(base).setUint16(cluster * 2, value & 0xffff, true);
    else {
      const at = base + ((cluster * 3) >> 1);
      const pair = this.meta[at]! | (this.meta[at + 1]! << 8);
      const next = cluster & 1 ? (pair & 0x000f) | ((value & 0xfff) << 4) : (pair & 0xf000) | (value & 0xfff);
      this.meta[at] = next & 0xff;
      this.meta[at + 1] = next >> 8;
    }
  }

  /** Marks every cluster used (end of chain) but those listed. */
  useAllBut(free: readonly number[]): this {
    const keep = new Set(free);
    for (let c = 2; c < this.clusters + 2; c++) this.setEntry(c, keep.has(c) ? 0 : EOC[this.type]);
    return this;
  }

  /** The byte range of a run of clusters [first, end). */
  bytes(first: number, end: number): { start: number; end: number } {
    return { start: this.at(first), end: this.at(end) };
  }

  private at(cluster: number): number {
    return this.dataOffsetBytes + (cluster - 2) * this.clusterBytes;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.sizeBytes) {
      return Promise.reject(new RangeError(`read ${offsetBytes}+${lengthBytes} outside ${this.sizeBytes}`));
    }
    const out = new Uint8Array(lengthBytes);
    if (offsetBytes < this.meta.length) out.set(this.meta.subarray(offsetBytes, offsetBytes + lengthBytes));
    return Promise.resolve(out);
  }
}

function trusted(map: FreeMap): Extract<FreeMap, { trusted: true }> {
  if (!map.trusted) throw new Error(`expected a trusted map, got: ${map.reason}`);
  return map;
}

async function reasonOf(vol: BlockReader): Promise<string> {
  const map = await readFatFreeMap(vol);
  if (map.trusted) throw new Error('expected an untrusted map');
  return map.reason;
}

describe('readFatFreeMap: which clusters are free', () => {
  it.each(['FAT12', 'FAT16', 'FAT32'] as const)('%s: free runs, used, bad and end-of-chain clusters', async (type) => {
    const vol = new FatVolume({ type, sectorsPerCluster: 2 });
    const last = vol.clusters + 1;
    vol.useAllBut([3, 4, 5, 8, 9, last]);
    vol.setEntry(6, 7); // a chain 6 → 7 → end
    vol.setEntry(10, BAD[type]);
    const map = trusted(await readFatFreeMap(vol));
    expect(map.free.ranges).toEqual([vol.bytes(3, 6), vol.bytes(8, 10), vol.bytes(last, last + 1)]);
    expect(map.unitBytes).toBe(1024);
    expect(map.counterFreeBytes).toBe(6 * 1024);
    expect(map.detail).toBe(`${type}: 6 of ${vol.clusters} clusters free`);
  });

  it.each(['FAT12', 'FAT16', 'FAT32'] as const)(
    '%s: an empty volume is free from the data area to the last cluster, never the tail',
    async (type) => {
      const vol = new FatVolume({ type, sectorsPerCluster: 4, tailSectors: 3, slackBytes: 12345 });
      vol.useAllBut(Array.from({ length: vol.clusters - 1 }, (_, i) => i + 3));
      const map = trusted(await readFatFreeMap(vol));
      expect(map.free.ranges).toEqual([vol.bytes(3, vol.clusters + 2)]);
      expect(map.free.ranges[0]!.end).toBe(vol.sizeBytes - 12345 - 3 * SECTOR);
    },
  );

  it('FAT12: odd and even entries sharing a byte decode apart', async () => {
    const vol = new FatVolume({ type: 'FAT12', clusters: 40 });
    vol.useAllBut([11, 12, 14, 17]);
    vol.setEntry(13, 0x021); // odd entry whose low nibble shares a byte with free entry 12
    const map = trusted(await readFatFreeMap(vol));
    expect(map.free.ranges).toEqual([vol.bytes(11, 13), vol.bytes(14, 15), vol.bytes(17, 18)]);
  });

  it('FAT32: ignores the top 4 bits of entries (a free entry with them set is free)', async () => {
    const vol = new FatVolume({ type: 'FAT32' }).useAllBut([5, 6]);
    vol.setEntry(5, 0xf0000000);
    vol.setEntry(7, 0xf0000000 | 8);
    const map = trusted(await readFatFreeMap(vol));
    expect(map.free.ranges).toEqual([vol.bytes(5, 7)]);
  });

  it('FAT32: reads in chunks and finds runs across a chunk boundary', async () => {
    const vol = new FatVolume({ type: 'FAT32', clusters: 300_000 });
    const free = [2 ** 18 - 3, 2 ** 18 - 2, 2 ** 18 - 1, 2 ** 18, 2 ** 18 + 1, 299_000];
    vol.useAllBut(free);
    const map = trusted(await readFatFreeMap(vol));
    expect(map.free.ranges).toEqual([vol.bytes(2 ** 18 - 3, 2 ** 18 + 2), vol.bytes(299_000, 299_001)]);
    vol.setEntry(2 ** 18 + 500, 0, 1);
    expect(await reasonOf(vol)).toMatch(/FAT copies differ/);
  });

  it('reports a stale FSInfo free count but neither trusts nor requires it', async () => {
    const vol = new FatVolume({ type: 'FAT32' }).useAllBut([9, 10]);
    vol.putFsInfo(1234);
    const map = trusted(await readFatFreeMap(vol));
    expect(map.counterFreeBytes).toBe(2 * SECTOR);
    expect(map.detail).toMatch(/FSInfo says 1234 \(advisory, not used\)/);
  });
});

describe('readFatFreeMap: trust', () => {
  it.each([
    ['FAT16', 0x7fff, /clean-shutdown bit clear/],
    ['FAT16', 0xbfff, /hard-error bit clear/],
    ['FAT32', 0x07ffffff, /clean-shutdown bit clear/],
    ['FAT32', 0x0bffffff, /hard-error bit clear/],
  ] as const)('%s FAT[1] = %s is untrusted', async (type, entry1, reason) => {
    const vol = new FatVolume({ type }).useAllBut([5]);
    vol.setEntry(1, entry1);
    expect(await reasonOf(vol)).toMatch(reason);
  });

  it('FAT12 has no dirty bits in FAT[1]', async () => {
    const vol = new FatVolume({ type: 'FAT12' }).useAllBut([5]);
    vol.setEntry(1, 0);
    expect((await readFatFreeMap(vol)).trusted).toBe(true);
  });

  it.each([
    ['FAT12', 37],
    ['FAT16', 37],
    ['FAT32', 65],
  ] as const)('%s: the boot sector dirty flag (BS_Reserved1 at %i) makes it untrusted', async (type, at) => {
    const vol = new FatVolume({ type }).useAllBut([5]);
    vol.meta[at] = 0x01;
    expect(await reasonOf(vol)).toMatch(/dirty flag in the boot sector/);
  });

  it.each(['FAT12', 'FAT16', 'FAT32'] as const)('%s: FAT copies that differ make it untrusted', async (type) => {
    const vol = new FatVolume({ type, fatCount: 3 }).useAllBut([5, 6]);
    vol.setEntry(6, EOC[type], 2);
    expect(await reasonOf(vol)).toMatch(/FAT copies differ/);
  });

  it('copies that differ only in FAT[0] and FAT[1] are still mirrors', async () => {
    const vol = new FatVolume({ type: 'FAT16' }).useAllBut([5]);
    vol.setEntry(1, 0xfff0, 1);
    expect((await readFatFreeMap(vol)).trusted).toBe(true);
  });

  it('one FAT: nothing to compare', async () => {
    const vol = new FatVolume({ type: 'FAT16', fatCount: 1 }).useAllBut([5]);
    expect(trusted(await readFatFreeMap(vol)).free.ranges).toEqual([vol.bytes(5, 6)]);
  });

  it('FAT32 with mirroring off reads the active FAT and does not compare', async () => {
    const vol = new FatVolume({ type: 'FAT32' }).useAllBut([5]);
    vol.view().setUint16(40, 0x81, true);
    vol.setEntry(5, EOC.FAT32, 0);
    vol.setEntry(7, 0, 1);
    expect(trusted(await readFatFreeMap(vol)).free.ranges).toEqual([vol.bytes(5, 6), vol.bytes(7, 8)]);
    vol.view().setUint16(40, 0x82, true);
    await expect(readFatFreeMap(vol)).rejects.toMatchObject({ code: 'BAD_IMAGE', message: /names FAT 2 of 2/ });
  });

  it.each([
    ['a chain that runs into a free cluster', (v: FatVolume) => v.setEntry(7, 5), /chain runs into free cluster 5/],
    ['an entry that is no cluster', (v: FatVolume) => v.setEntry(7, v.clusters + 2), /cluster 7 holds 0x/],
    ['entry value 1', (v: FatVolume) => v.setEntry(7, 1), /cluster 7 holds 0x1,/],
    ['a FAT[0] without the media byte', (v: FatVolume) => v.setEntry(0, 0xfff0), /media byte/],
    ['a FAT32 version 1.0', (v: FatVolume) => v.view().setUint16(42, 0x100, true), /version 1\.0/],
    ['a free FAT32 root directory', (v: FatVolume) => v.setEntry(2, 0), /root directory cluster 2 is marked free/],
    ['a FAT32 root directory past the end', (v: FatVolume) => v.view().setUint32(44, 1 << 27, true), /outside/],
  ])('%s is untrusted', async (_what, edit, reason) => {
    const vol = new FatVolume({ type: 'FAT32' }).useAllBut([5]);
    edit(vol);
    expect(await reasonOf(vol)).toMatch(reason);
  });

  it('a filesystem larger than its volume is untrusted', async () => {
    const vol = new FatVolume({ type: 'FAT16' }).useAllBut([5]);
    const short = { sizeBytes: vol.sizeBytes - 1, read: (o: number, l: number) => vol.read(o, l) };
    expect(await reasonOf(short)).toMatch(/says \d+ bytes but the volume has/);
  });

  it.each([
    ['zeros', (v: FatVolume) => v.meta.fill(0, 0, SECTOR), /no valid boot sector/],
    ['a FAT too small for its clusters', (v: FatVolume) => v.view().setUint16(22, 1, true), /need \d+ bytes of FAT/],
  ])('%s: BAD_IMAGE', async (_what, edit, message) => {
    const vol = new FatVolume({ type: 'FAT16', clusters: 20_000 });
    edit(vol);
    await expect(readFatFreeMap(vol)).rejects.toMatchObject({ code: 'BAD_IMAGE', message });
  });

  it('a volume smaller than a boot sector: BAD_IMAGE', async () => {
    const tiny = { sizeBytes: 100, read: () => Promise.resolve(new Uint8Array(100)) };
    await expect(readFatFreeMap(tiny)).rejects.toMatchObject({ code: 'BAD_IMAGE', message: /FAT at byte 0/ });
  });
});

/** A copy of `vol` with a few random bytes of its boot sector, BPB fields or FAT changed. */
function mutate(base: FatVolume, rand: () => number): BlockReader {
  const meta = base.meta.slice();
  const edits = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < edits; i++) {
    const where = rand();
    const at =
      where < 0.5
        ? 11 + Math.floor(rand() * 60) // the BPB
        : where < 0.6
          ? Math.floor(rand() * 2 * SECTOR) // boot sector and FSInfo
          : base.fatOffset(0) + Math.floor(rand() * Math.min(4096, base.fatSectors * SECTOR));
    meta[at] = rand() < 0.3 ? 0 : rand() < 0.5 ? 0xff : Math.floor(rand() * 256);
  }
  const sizeBytes = rand() < 0.2 ? Math.floor(rand() * base.sizeBytes) : base.sizeBytes;
  return memoryReader(meta, sizeBytes);
}

describe('readFatFreeMap: fuzz', () => {
  it('2000 mutated volumes give a FreeMap inside the volume or a SparsifyError, nothing else', async () => {
    const rand = prng(20240601);
    const bases = (['FAT12', 'FAT16', 'FAT32'] as const).map((type) => {
      const vol = new FatVolume({ type, sectorsPerCluster: 2 });
      const used = Array.from({ length: vol.clusters + 3 }, (_, c) => c === 2 || (c > 2 && rand() < 0.7));
      used[vol.clusters + 2] = false;
      for (let c = 3; c < vol.clusters + 2; c++) {
        if (used[c]) vol.setEntry(c, used[c + 1] && rand() < 0.5 ? c + 1 : EOC[type]);
      }
      return vol;
    });
    const outcomes = { trusted: 0, untrusted: 0, error: 0 };
    for (let i = 0; i < 2000; i++) {
      const vol = mutate(bases[i % bases.length]!, rand);
      try {
        const map = await readFatFreeMap(vol);
        if (map.trusted) {
          const last = map.free.ranges.at(-1);
          expect(last === undefined || last.end <= vol.sizeBytes).toBe(true);
          expect(map.counterFreeBytes).toBe(map.free.totalBytes);
          outcomes.trusted++;
        } else {
          expect(map.reason).toMatch(/\S/);
          outcomes.untrusted++;
        }
      } catch (err) {
        if (!isSparsifyError(err, 'BAD_IMAGE')) throw err;
        expect(err.message).toMatch(/^FAT at byte \d+: /);
        outcomes.error++;
      }
    }
    expect(outcomes.trusted).toBeGreaterThan(100);
    expect(outcomes.untrusted).toBeGreaterThan(100);
    expect(outcomes.error).toBeGreaterThan(50);
  });
});
