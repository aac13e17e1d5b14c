/**
 * The NTFS map reader on synthetic volumes built by fixtures.ts, byte by byte, from the
 * on-disk layouts (Linux-NTFS "NTFS Documentation"; ntfs-3g layout.h and logfile.h): boot sector,
 * MFT records with update sequence arrays, resident and non-resident attributes, attribute lists,
 * a root directory index with an INDX block, $LogFile restart pages, and a $Bitmap.
 */
import { describe, expect, it } from 'vitest';
import { hasAscii } from '../../../../src/binary/bytes.js';
import { isSparsifyError } from '../../../../src/errors.js';
import type { Range } from '../../../../src/disk/extent-set.js';
import { FreeClusterCollector } from '../../../../src/fs/ntfs/bitmap.js';
import { parseLogFileState } from '../../../../src/fs/ntfs/logfile.js';
import { parseAttributes, parseMftRecord } from '../../../../src/fs/ntfs/record.js';
import { parseAttributeList } from '../../../../src/fs/ntfs/stream.js';
import { parseDataRuns, type DataRun } from '../../../../src/fs/ntfs/runs.js';
import { readNtfsFreeMap } from '../../../../src/fs/ntfs/free-map.js';
import { probeVolume } from '../../../../src/fs/probe.js';
import type { FreeMap } from '../../../../src/fs/types.js';
import { prng } from '../../../helpers/copy-fakes.js';
import { flip, memReader, putAscii, view } from '../../layout/fixtures.js';
import {
  AT,
  buildVolume,
  encodeRuns,
  fileRecord,
  HIBERFIL_RECORD,
  KiB,
  LOG_BYTES,
  nonResident,
  protect,
  RECORD,
  resident,
  restartPage,
  SECTOR,
  unprotect,
  type Built,
  type VolumeOptions,
} from './fixtures.js';

async function mapOf(built: Built | Uint8Array): Promise<FreeMap> {
  return readNtfsFreeMap(memReader(built instanceof Uint8Array ? built : built.image));
}

async function expectUntrusted(options: VolumeOptions, reason: RegExp): Promise<void> {
  const map = await mapOf(buildVolume(options));
  expect(map).toEqual({ trusted: false, reason: expect.stringMatching(reason) });
}

// ---------------------------------------------------------------- tests

const HERE = { what: 'test', offsetBytes: 1000 };

describe('parseDataRuns (Linux-NTFS "Data Runs")', () => {
  const decode = (bytes: number[], firstVcn = 0): DataRun[] => parseDataRuns(Uint8Array.from(bytes), 0, bytes.length, firstVcn, HERE);

  it('decodes a run: header 0x21, one length byte, two LCN bytes', () => {
    expect(decode([0x21, 0x18, 0x34, 0x56, 0x00])).toEqual([{ vcn: 0, lcn: 0x5634, clusters: 0x18 }]);
  });

  it('adds signed LCN deltas, so a fragment may lie before the previous one', () => {
    expect(decode([0x11, 0x30, 0x60, 0x21, 0x10, 0x00, 0x01, 0x11, 0x20, 0xe0, 0x00], 5)).toEqual([
      { vcn: 5, lcn: 0x60, clusters: 0x30 },
      { vcn: 0x35, lcn: 0x160, clusters: 0x10 },
      { vcn: 0x45, lcn: 0x140, clusters: 0x20 },
    ]);
  });

  it('reads an LCN field of size 0 as a sparse run that leaves the LCN where it was', () => {
    expect(decode([0x11, 0x30, 0x20, 0x01, 0x60, 0x11, 0x10, 0x30, 0x00])).toEqual([
      { vcn: 0, lcn: 0x20, clusters: 0x30 },
      { vcn: 0x30, lcn: undefined, clusters: 0x60 },
      { vcn: 0x90, lcn: 0x50, clusters: 0x10 },
    ]);
  });

  it('round-trips 8-byte fields and large negative deltas', () => {
    const runs = [{ lcn: 2 ** 40, clusters: 2 ** 33 }, { lcn: 3, clusters: 1 }, { clusters: 7 }, { lcn: 2 ** 45 + 1, clusters: 9 }];
    const bytes = encodeRuns(runs);
    expect(parseDataRuns(bytes, 0, bytes.length, 0, HERE).map((r) => [r.lcn, r.clusters])).toEqual(runs.map((r) => [r.lcn, r.clusters]));
  });

  it('ends at the end of the attribute when no terminator comes', () => {
    expect(decode([0x11, 0x01, 0x02])).toEqual([{ vcn: 0, lcn: 2, clusters: 1 }]);
  });

  it.each([
    ['a run cut by the end of its attribute', [0x21, 0x18, 0x34], /at byte 1000: data run is truncated/],
    ['a zero length', [0x11, 0x00, 0x05, 0x00], /length is zero or negative/],
    ['a negative length', [0x11, 0xff, 0x05, 0x00], /length is zero or negative/],
    ['a length field of 0 bytes', [0x10, 0x05, 0x00], /field sizes 0 and 1/],
    ['a 9-byte LCN field', [0x91, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00], /field sizes 1 and 9/],
    ['an LCN that goes below 0', [0x11, 0x01, 0x05, 0x11, 0x01, 0xf0, 0x00], /at byte 1003: data run LCN -11/],
  ])('throws BAD_IMAGE on %s', (_name, bytes, message) => {
    expect(() => decode(bytes)).toThrowError(message);
  });
});

describe('parseMftRecord and parseAttributes', () => {
  const record = (): Uint8Array => fileRecord(6, [resident(0x10, '', new Uint8Array(48)), nonResident(0x80, '', { runs: [{ lcn: 24, clusters: 1 }], dataBytes: 32, allocatedBytes: 4096 })]);

  it('decodes the header and attributes of a fixed-up record', () => {
    const rec = parseMftRecord(record(), 6, 5 * KiB);
    expect(rec).toMatchObject({ number: 6, inUse: true, isDirectory: false, sequence: 6, baseRecord: 0 });
    expect(rec.attributes.map((a) => [a.type, a.resident])).toEqual([[0x10, true], [0x80, false]]);
    expect(rec.attributes[1]).toMatchObject({ lowestVcn: 0, highestVcn: 0, dataBytes: 32, allocatedBytes: 4096 });
  });

  it('does not modify the caller\'s bytes when applying fixups', () => {
    const bytes = record();
    const copy = bytes.slice();
    parseMftRecord(bytes, 6, 0);
    expect(bytes).toEqual(copy);
  });

  it.each([
    ['a torn write (the last stride no longer ends in the sequence number)', (r: Uint8Array) => flip(r, 1022, 1), /at byte 5120: update sequence mismatch/],
    ['a BAAD record', (r: Uint8Array) => putAscii(r, 0, 'BAAD'), /marked BAAD/],
    ['no FILE signature', (r: Uint8Array) => putAscii(r, 0, 'FILF'), /no FILE signature/],
    ['an update sequence count for another record size', (r: Uint8Array) => view(r).setUint16(6, 9, true), /update sequence count 9 is not 3/],
    ['another record number in the header', (r: Uint8Array) => view(r).setUint32(0x2c, 7, true), /says it is number 7/],
    ['more bytes in use than the record holds', (r: Uint8Array) => view(r).setUint32(0x18, 1028, true), /1028 bytes in use/],
    ['a first attribute before the update sequence array', (r: Uint8Array) => view(r).setUint16(0x14, 0x30, true), /first attribute offset 48/],
  ])('throws BAD_IMAGE on %s', (_name, damage, message) => {
    const bytes = record();
    damage(bytes);
    expect(() => parseMftRecord(bytes, 6, 5 * KiB)).toThrowError(message);
  });

  it.each([
    ['a zero attribute length', (r: Uint8Array) => view(r).setUint32(0x38 + 4, 0, true), /attribute length 0 does not fit/],
    ['an attribute longer than the bytes in use', (r: Uint8Array) => view(r).setUint32(0x38 + 4, 0x4000, true), /attribute length 16384/],
    ['an unaligned attribute length', (r: Uint8Array) => view(r).setUint32(0x38 + 4, 0x4c, true), /attribute length 76/],
    ['a missing end marker', (r: Uint8Array) => view(r).setUint32(0x18, 0x38 + 0x48 + 0x48, true), /without an end marker|does not fit/],
    ['a resident value outside its attribute', (r: Uint8Array) => view(r).setUint32(0x38 + 0x10, 0x1000, true), /resident value lies outside/],
    ['a non-resident flag of 2', (r: Uint8Array) => (r[0x38 + 0x48 + 8] = 2), /non-resident flag 2/],
    ['mapping pairs beyond the attribute', (r: Uint8Array) => view(r).setUint16(0x38 + 0x48 + 0x20, 0x400, true), /mapping pairs offset 1024/],
    ['a negative data size', (r: Uint8Array) => view(r).setBigInt64(0x38 + 0x48 + 0x30, -1n, true), /data size -1 is out of range/],
    ['a name outside the attribute', (r: Uint8Array) => (r[0x38 + 9] = 200), /name lies outside/],
  ])('throws BAD_IMAGE on %s', (_name, damage, message) => {
    const bytes = record();
    unprotect(bytes);
    damage(bytes);
    protect(bytes);
    expect(() => parseMftRecord(bytes, 6, 0)).toThrowError(message);
  });

  it('walks attributes only up to the end marker', () => {
    const bytes = new Uint8Array(64);
    view(bytes).setUint32(0, 0xffffffff, true);
    expect(parseAttributes(bytes, 0, 64, HERE)).toEqual([]);
  });
});

/** Free cluster runs of a whole in-memory bitmap, through the collector the reader streams into. */
function freeClusterRuns(bitmap: Uint8Array, clusterCount: number): Range[] {
  const collector = new FreeClusterCollector(clusterCount);
  collector.add(bitmap);
  return collector.finish();
}

describe('freeClusterRuns', () => {
  it('reads bits least significant first and ignores padding bits past the cluster count', () => {
    expect(freeClusterRuns(Uint8Array.from([0b1111_0110, 0x00, 0xff, 0x00]), 30)).toEqual([
      { start: 0, end: 1 },
      { start: 3, end: 4 },
      { start: 8, end: 16 },
      { start: 24, end: 30 },
    ]);
  });
});

describe('parseLogFileState (logfile.c: ntfs_check_logfile, ntfs_is_logfile_clean)', () => {
  const log = (...pages: Uint8Array[]): Uint8Array => {
    const bytes = new Uint8Array(LOG_BYTES).fill(0xff);
    pages.forEach((p, i) => bytes.set(p, i * 4096));
    return bytes;
  };
  const state = (bytes: Uint8Array) => parseLogFileState(bytes, HERE);

  it('calls a log of 0xFF pages empty and clean', () => {
    expect(state(log())).toEqual({ clean: true, empty: true });
  });

  it('uses the second restart page when the first is damaged beyond its first sector', () => {
    const first = restartPage({ lsn: 9, inUse: true, cleanFlag: false });
    view(first).setUint32(0x10, 3000, true);
    expect(state(log(first, restartPage({ lsn: 2, inUse: false, cleanFlag: false })))).toEqual({ clean: true, empty: false });
  });

  it('still reads a torn restart page whose restart area lies in its first sector, as the kernel does', () => {
    const page = restartPage({ lsn: 9, inUse: true, cleanFlag: false });
    flip(page, 4094, 1);
    expect(state(log(page))).toEqual({ clean: false, cause: 'dirty', reason: expect.stringMatching(/changes to replay/) });
  });

  it('judges a page chkdsk rewrote (CHKD, no update sequence) by the same rule', () => {
    const page = restartPage({ lsn: 0, inUse: false, cleanFlag: true });
    unprotect(page);
    putAscii(page, 0, 'CHKD');
    view(page).setUint16(6, 0, true);
    expect(state(log(page))).toEqual({ clean: true, empty: false });
  });
});

describe('parseAttributeList', () => {
  it('throws BAD_IMAGE on an entry whose length runs past the list', () => {
    const value = new Uint8Array(0x20);
    view(value).setUint16(4, 0x28, true);
    expect(() => parseAttributeList(value, HERE)).toThrowError(/at byte 1004: attribute list entry length 40 does not fit/);
  });
});

describe('readNtfsFreeMap on synthetic volumes', () => {
  it('returns exactly the clear bits of $Bitmap as bytes, and never the partial cluster or backup boot sector', async () => {
    const built = buildVolume();
    const map = await mapOf(built);
    if (!map.trusted) throw new Error(map.reason);
    expect(map.free.ranges).toEqual(built.expectedFree.ranges);
    expect(map.unitBytes).toBe(4096);
    expect(map.counterFreeBytes).toBe(built.expectedFree.totalBytes);
    expect(map.free.ranges.at(-1)!.end).toBeLessThanOrEqual(built.clusterCount * 4096);
    expect(map.detail).toBe('NTFS 3.1, 4096-byte clusters, $Bitmap in 1 run');
  });

  it.each([
    ['in two runs, the second before the first', { bitmapSplit: true }, '2 runs'],
    ['in two extension records named by an $ATTRIBUTE_LIST', { bitmapList: true }, '2 runs'],
  ] as const)('reads a fragmented $Bitmap %s', async (_name, options, runs) => {
    const built = buildVolume({ clusterBytes: 512, clusterCount: 8192, ...options });
    const map = await mapOf(built);
    if (!map.trusted) throw new Error(map.reason);
    expect(map.detail).toContain(runs);
    expect(map.free.ranges).toEqual(built.expectedFree.ranges);
  });

  it('maps a $MFT whose second extent lies in an extension record named by its $ATTRIBUTE_LIST', async () => {
    const built = buildVolume({ mftList: true, hiberfil: { head: '\0\0\0\0' } });
    const map = await mapOf(built);
    if (!map.trusted) throw new Error(map.reason);
    expect(map.free.ranges).toEqual(built.expectedFree.ranges);
  });

  it.each([
    ['a cleared hiberfil.sys in the root index', { hiberfil: { head: '\0\0\0\0' } }],
    ['a cleared hiberfil.sys in an INDX block under the root', { hiberfil: { head: '\0\0\0\0', deep: true } }],
    ['a $LogFile whose restart area has no client in use', { log: [{ lsn: 5, inUse: false, cleanFlag: false }] }],
    ['a $LogFile open but flagged clean', { log: [{ lsn: 5, inUse: true, cleanFlag: true }, { lsn: 4, inUse: true, cleanFlag: false }] }],
    ['NTFS 1.2 (Windows NT 4)', { version: [1, 2] }],
  ] as const)('trusts %s', async (_name, options) => {
    expect((await mapOf(buildVolume(options))).trusted).toBe(true);
  });

  it.each([
    ['the dirty flag', { volumeFlags: 0x0001 }, /dirty flag is set/],
    ['chkdsk underway', { volumeFlags: 0x4000 }, /chkdsk was interrupted/],
    ['NTFS version 4.0', { version: [4, 0] }, /version 4.0 is not supported/],
    ['hiberfil.sys starting with HIBR', { hiberfil: { head: 'HIBR' } }, /Fast Startup \(hiberfil.sys starts with "HIBR"\)/],
    ['hiberfil.sys starting with hibr in an INDX block', { hiberfil: { head: 'hibr', deep: true } }, /starts with "hibr"/],
    ['hiberfil.sys starting with wake', { hiberfil: { head: 'wake' } }, /starts with "wake"/],
    ['a hiberfil.sys shorter than 4 KiB', { hiberfil: { head: '\0\0\0\0', bytes: 100 } }, /shorter than 4096 bytes/],
    ['a $LogFile with a client in use and no clean flag', { log: [{ lsn: 5, inUse: true, cleanFlag: false }] }, /changes to replay/],
    ['a $LogFile whose newer restart page is dirty', { log: [{ lsn: 4, inUse: false, cleanFlag: true }, { lsn: 9, inUse: true, cleanFlag: false }] }, /changes to replay/],
    ['a version 2.0 $LogFile (Fast Startup)', { log: [{ lsn: 5, inUse: false, cleanFlag: true, version: [2, 0] }] }, /version 2.0/],
    ['a $LogFile that is neither empty nor has a restart page', { log: 'garbage' }, /no valid restart page/],
    ['a compressed $Bitmap', { bitmapFlags: 0x0001 }, /compressed, encrypted or sparse/],
    ['a sparse $Bitmap', { bitmapFlags: 0x8000 }, /compressed, encrypted or sparse/],
    ['a $Bitmap shorter than the cluster count', { bitmapShortBytes: 8 }, /holds 192 bits for 256 clusters/],
    ['a $MFT cluster marked free', { freeMftCluster: true }, /marks cluster 4 of \$MFT free/],
  ] as const)('does not trust a volume with %s', async (_name, options, reason) => {
    await expectUntrusted(options, reason);
  });

  it('does not trust a 512-byte MFT record size', async () => {
    const built = buildVolume();
    view(built.image).setInt8(0x40, -9);
    expect(await mapOf(built)).toEqual({ trusted: false, reason: expect.stringMatching(/record size 512/) });
  });

  it('does not trust a boot sector that claims more sectors than the volume holds', async () => {
    const built = buildVolume();
    const map = await readNtfsFreeMap(memReader(built.image.subarray(0, built.image.length - 4 * SECTOR)));
    expect(map).toEqual({ trusted: false, reason: expect.stringMatching(/more than the .*-byte volume holds/) });
  });

  it('throws BAD_IMAGE naming record 6 and the volume byte of a torn $Bitmap record', async () => {
    const built = buildVolume();
    flip(built.image, built.recordOffset(6) + 510, 1);
    await expect(mapOf(built)).rejects.toThrowError(`ntfs MFT record 6 at byte ${built.recordOffset(6)}: update sequence mismatch`);
  });

  it('throws BAD_IMAGE when $Bitmap runs point beyond the volume', async () => {
    const built = buildVolume();
    const rec = built.image.subarray(built.recordOffset(6), built.recordOffset(6) + RECORD);
    unprotect(rec);
    rec.set(encodeRuns([{ lcn: 5000, clusters: 2 }]), 0x38 + 0x40);
    protect(rec);
    await expect(mapOf(built)).rejects.toThrowError(/ntfs MFT record 6 at byte \d+: data run at LCN 5000 \(2 clusters\) lies beyond the 256 clusters/);
  });

  it('throws BAD_IMAGE when $MFT does not start where the boot sector says', async () => {
    const built = buildVolume();
    built.image.copyWithin(5 * 4096, AT.mft, AT.mft + RECORD);
    view(built.image).setBigUint64(0x30, 5n, true);
    await expect(mapOf(built)).rejects.toThrowError('ntfs MFT record 0 at byte 20480: $MFT does not start at LCN 5 as the boot sector says');
  });

  it('throws BAD_IMAGE on a volume that is not NTFS', async () => {
    await expect(mapOf(new Uint8Array(64 * KiB))).rejects.toThrowError('ntfs boot sector at byte 0: not an NTFS boot sector');
  });
});

describe('readNtfsFreeMap fuzzed', () => {
  const bases: Built[] = [
    buildVolume({ hiberfil: { head: '\0\0\0\0', deep: true }, log: [{ lsn: 3, inUse: false, cleanFlag: true }, { lsn: 2, inUse: false, cleanFlag: true }] }),
    buildVolume({ clusterBytes: 512, clusterCount: 8192, bitmapList: true, mftList: true, hiberfil: { head: '\0\0\0\0' } }),
  ];
  const metadataRecords = [0, 2, 3, 5, 6, 17, 18, 19, HIBERFIL_RECORD];
  /** Multi-sector protected structures as [offset, length]: metadata records, the INDX block, the restart pages. */
  const protectedStructures = (base: Built): (readonly [number, number])[] => [
    ...metadataRecords.map((n) => [base.recordOffset(n), RECORD] as const),
    [AT.indexBlock, 4096],
    [AT.log, 4096],
    [AT.log + 4096, 4096],
  ];

  /** Changes bytes inside a protected structure and writes its update sequence again, so the change gets past the fixups. */
  function mutateProtected(image: Uint8Array, [offset, length]: readonly [number, number], changes: number, pick: (n: number) => number, value: (old: number) => number): void {
    const bytes = image.subarray(offset, offset + length);
    const usaOffset = view(bytes).getUint16(4, true);
    if (usaOffset + 2 * (length / SECTOR + 1) > SECTOR) return;
    const usn = view(bytes).getUint16(usaOffset, true);
    unprotect(bytes);
    const limit = hasAscii(bytes, 0, 'FILE') ? Math.min(length, view(bytes).getUint32(0x18, true)) : 0x200;
    for (let i = 0; i < changes; i++) {
      const at = pick(limit);
      bytes[at] = value(bytes[at]!);
    }
    protect(bytes, usn, usaOffset);
  }

  /** One to four byte changes: in the boot sector, inside a protected structure, or anywhere in the metadata. */
  function mutate(base: Built, random: () => number): Uint8Array {
    const image = base.image.slice();
    const pick = (n: number): number => Math.floor(random() * n);
    const value = (old: number): number => (random() < 0.5 ? old ^ (1 << pick(8)) : pick(256));
    const where = random();
    const changes = 1 + pick(4);
    if (where < 0.2) {
      for (let i = 0; i < changes; i++) image[pick(0x54)] = value(image[pick(0x54)]!);
    } else if (where < 0.85) {
      const structures = protectedStructures(base);
      mutateProtected(image, structures[pick(structures.length)]!, changes, pick, value);
    } else {
      for (let i = 0; i < changes; i++) {
        const at = pick(AT.userArea);
        image[at] = value(image[at]!);
      }
    }
    return image;
  }

  it('returns a map inside the volume or throws SparsifyError, never anything else, over 1500 seeded mutations', async () => {
    const random = prng(20240611);
    const outcomes = { trusted: 0, untrusted: 0, badImage: 0 };
    for (let i = 0; i < 1500; i++) {
      const base = bases[i % bases.length]!;
      const image = mutate(base, random);
      const reader = memReader(image);
      try {
        const map = await readNtfsFreeMap(reader);
        if (map.trusted) {
          outcomes.trusted++;
          expect(map.free.ranges.every((r) => r.start % base.clusterBytes === 0 && r.end % base.clusterBytes === 0)).toBe(true);
          expect(map.free.ranges.at(-1)?.end ?? 0).toBeLessThanOrEqual(base.clusterCount * base.clusterBytes);
        } else {
          outcomes.untrusted++;
          expect(map.reason).toMatch(/\w/);
        }
      } catch (err) {
        if (!isSparsifyError(err, 'BAD_IMAGE')) throw new Error(`mutation ${i}: ${String(err)}`, { cause: err });
        expect((err as Error).message).toMatch(/^ntfs .* at byte \d+: /);
        outcomes.badImage++;
      }
      // A decoder that loops re-reading would show here long before it hangs the suite.
      expect(reader.reads.length).toBeLessThan(200);
      // The probe reads the same state: it finds or not, but never fails the run.
      await expect(probeVolume(memReader(image))).resolves.toHaveProperty('type');
    }
    expect(outcomes.trusted).toBeGreaterThan(100);
    expect(outcomes.untrusted).toBeGreaterThan(20);
    expect(outcomes.badImage).toBeGreaterThan(100);
  });
});
