/**
 * The ext free-map reader on synthetic filesystems built here, block by block, from layouts
 * worked out by hand from the kernel's ext4 documentation (no mke2fs: the integration test
 * compares against the real tools).
 */
import { describe, expect, it } from 'vitest';
import type { BlockReader } from '../../../../src/disk/types.js';
import { isSparsifyError } from '../../../../src/errors.js';
import { complementRuns, firstClearBit, parseBitmapFreeRuns } from '../../../../src/fs/ext/bitmap.js';
import { crc32cUpdate } from '../../../../src/binary/crc32.js';
import { crc16Update } from '../../../../src/fs/ext/checksum.js';
import { groupDescriptorChecksum, parseGroupDescriptor } from '../../../../src/fs/ext/descriptor.js';
import { baseMetaBlocks, descriptorBlock, groupHasSuper } from '../../../../src/fs/ext/layout.js';
import { extSuperDistrust, parseExtSuper, type ExtSuper } from '../../../../src/fs/ext/superblock.js';
import { readExtFreeMap } from '../../../../src/fs/ext/free-map.js';
import type { FreeMap } from '../../../../src/fs/types.js';

/** An image that stores only what was written (so a 256 TiB filesystem costs a few MiB). */
class SparseImage {
  static readonly PAGE = 65536;
  readonly pages = new Map<number, Uint8Array>();
  readonly reads: Array<[number, number]> = [];
  constructor(public sizeBytes: number) {}

  write(offset: number, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length; ) {
      const page = Math.floor((offset + done) / SparseImage.PAGE);
      const at = (offset + done) % SparseImage.PAGE;
      const n = Math.min(bytes.length - done, SparseImage.PAGE - at);
      if (!this.pages.has(page)) this.pages.set(page, new Uint8Array(SparseImage.PAGE));
      this.pages.get(page)!.set(bytes.subarray(done, done + n), at);
      done += n;
    }
  }

  bytesAt(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let done = 0; done < length; ) {
      const page = Math.floor((offset + done) / SparseImage.PAGE);
      const at = (offset + done) % SparseImage.PAGE;
      const n = Math.min(length - done, SparseImage.PAGE - at);
      const data = this.pages.get(page);
      if (data) out.set(data.subarray(at, at + n), done);
      done += n;
    }
    return out;
  }

  get reader(): BlockReader {
    return {
      sizeBytes: this.sizeBytes,
      read: (offset, length) => {
        this.reads.push([offset, length]);
        if (offset < 0 || length < 0 || offset + length > this.sizeBytes) {
          return Promise.reject(new RangeError(`read ${offset}+${length} outside ${this.sizeBytes}`));
        }
        return Promise.resolve(this.bytesAt(offset, length));
      },
    };
  }
}

interface Layout {
  blockSize: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  blocksCount: number;
  descBytes: 32 | 64;
  checksum: 'crc32c' | 'crc16' | 'none';
  flexBg?: boolean;
  firstMetaBg?: number;
  backupGroups?: [number, number];
  reservedGdt: number;
  inodesPerGroup: number;
  inodeSize: number;
  groups: Array<{ bb: number; ib: number; it: number; uninit?: boolean }>;
  /** Where each descriptor-table block's primary copy lives. */
  descBlocks: number[];
  /** Every block in use, [start, end): bitmaps and free counts come from this. */
  used: Array<[number, number]>;
  /** Descriptor free counts differ from `used` by this, per group. */
  countSkew?: Record<number, number>;
  superFields?: { state?: number; lastOrphan?: number; incompat?: number; roCompat?: number; freeDelta?: number };
  mmp?: { block: number; seq: number };
  volumeBytes?: number;
}

const UUID = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i * 7);

function putSuper(img: SparseImage, l: Layout): void {
  const sb = new Uint8Array(1024);
  const v = new DataView(sb.buffer);
  const log = Math.log2(l.blockSize / 1024);
  const wide = l.descBytes === 64;
  v.setUint32(0x4, l.blocksCount % 2 ** 32, true);
  v.setUint32(0x150, Math.floor(l.blocksCount / 2 ** 32), true);
  v.setUint32(0x0, l.groups.length * l.inodesPerGroup, true);
  v.setUint32(0x14, l.firstDataBlock, true);
  v.setUint32(0x18, log, true);
  v.setUint32(0x1c, log, true);
  v.setUint32(0x20, l.blocksPerGroup, true);
  v.setUint32(0x24, l.blocksPerGroup, true);
  v.setUint32(0x28, l.inodesPerGroup, true);
  v.setUint16(0x38, 0xef53, true);
  v.setUint16(0x3a, l.superFields?.state ?? 1, true);
  v.setUint32(0x4c, 1, true);
  v.setUint16(0x58, l.inodeSize, true);
  v.setUint32(0x5c, l.backupGroups ? 0x200 : 0, true);
  const incompat = 0x2 | (wide ? 0x80 : 0) | (l.flexBg ? 0x200 : 0) | (l.firstMetaBg !== undefined ? 0x10 : 0) | (l.mmp ? 0x100 : 0);
  v.setUint32(0x60, incompat | (l.superFields?.incompat ?? 0), true);
  const csum = { crc32c: 0x400, crc16: 0x10, none: 0 }[l.checksum];
  v.setUint32(0x64, 0x1 | csum | (l.superFields?.roCompat ?? 0), true);
  sb.set(UUID, 0x68);
  v.setUint16(0xce, l.reservedGdt, true);
  v.setUint32(0xe8, l.superFields?.lastOrphan ?? 0, true);
  if (wide) v.setUint16(0xfe, 64, true);
  v.setUint32(0x104, l.firstMetaBg ?? 0, true);
  if (l.mmp) v.setBigUint64(0x168, BigInt(l.mmp.block), true);
  sb[0x175] = 1;
  if (l.backupGroups) l.backupGroups.forEach((g, i) => v.setUint32(0x24c + 4 * i, g, true));
  img.write(1024, sb);
}

function groupSpan(l: Layout, group: number): { first: number; blocks: number } {
  const first = l.firstDataBlock + group * l.blocksPerGroup;
  return { first, blocks: Math.min(l.blocksPerGroup, l.blocksCount - first) };
}

/** Free blocks of `group` by `used` (`used` ranges must not overlap), plus the layout's skew. */
function groupFree(l: Layout, group: number): number {
  const { first, blocks } = groupSpan(l, group);
  const used = l.used.reduce((n, [a, b]) => n + Math.max(0, Math.min(b, first + blocks) - Math.max(a, first)), 0);
  return blocks - used + (l.countSkew?.[group] ?? 0);
}

/** Bits of `group` covered by `used`, with the padding past a short last group set (as on disk). */
function groupBitmap(l: Layout, group: number): Uint8Array {
  const { first, blocks } = groupSpan(l, group);
  const bitmap = new Uint8Array(l.blockSize);
  const set = (bit: number): void => void (bitmap[bit >> 3] = bitmap[bit >> 3]! | (1 << (bit & 7)));
  for (const [a, b] of l.used) {
    for (let block = Math.max(a, first); block < Math.min(b, first + blocks); block++) set(block - first);
  }
  for (let bit = blocks; bit < 8 * l.blockSize; bit++) set(bit);
  return bitmap;
}

/** Writes a filesystem following `l`; the superblock's free count is the groups' sum unless skewed. */
function buildExt(l: Layout): SparseImage {
  const fsBytes = l.blocksCount * l.blockSize;
  const img = new SparseImage(l.volumeBytes ?? fsBytes);
  putSuper(img, l);
  const s = parseExtSuper(img.bytesAt(1024, 1024));
  const perBlock = l.blockSize / l.descBytes;
  let freeSum = 0;
  l.groups.forEach((g, group) => {
    const free = groupFree(l, group);
    freeSum += free;
    const desc = new Uint8Array(l.descBytes);
    const v = new DataView(desc.buffer);
    const wide = l.descBytes === 64;
    const put32 = (lo: number, hi: number, value: number): void => {
      v.setUint32(lo, value % 2 ** 32, true);
      if (wide) v.setUint32(hi, Math.floor(value / 2 ** 32), true);
    };
    put32(0x0, 0x20, g.bb);
    put32(0x4, 0x24, g.ib);
    put32(0x8, 0x28, g.it);
    v.setUint16(0xc, free & 0xffff, true);
    if (wide) v.setUint16(0x2c, free >>> 16, true);
    v.setUint16(0x12, g.uninit ? 0x2 : 0, true);
    if (!(g.uninit && l.checksum !== 'none')) {
      const bitmap = groupBitmap(l, group);
      img.write(g.bb * l.blockSize, bitmap);
      const crc = crc32cUpdate(s.checksumSeed, bitmap.subarray(0, l.blocksPerGroup / 8));
      v.setUint16(0x18, crc & 0xffff, true);
      if (wide) v.setUint16(0x38, crc >>> 16, true);
    }
    v.setUint16(0x1e, groupDescriptorChecksum(s, group, desc) ?? 0, true);
    img.write(l.descBlocks[Math.floor(group / perBlock)]! * l.blockSize + (group % perBlock) * l.descBytes, desc);
  });
  if (l.mmp) img.write(l.mmp.block * l.blockSize, u32le([0x004d4d50, l.mmp.seq]));
  const freeBlocks = freeSum + (l.superFields?.freeDelta ?? 0);
  img.write(1024 + 0xc, u32le([freeBlocks % 2 ** 32]));
  img.write(1024 + 0x158, u32le([Math.floor(freeBlocks / 2 ** 32)]));
  fixSuperChecksum(img);
  return img;
}

function u32le(values: number[]): Uint8Array {
  const bytes = new Uint8Array(4 * values.length);
  values.forEach((x, i) => new DataView(bytes.buffer).setUint32(4 * i, x >>> 0, true));
  return bytes;
}

function fixSuperChecksum(img: { bytesAt(o: number, n: number): Uint8Array; write(o: number, b: Uint8Array): void }): void {
  img.write(1024 + 0x3fc, u32le([crc32cUpdate(0xffffffff, img.bytesAt(1024, 0x3fc))]));
}

/**
 * Layout A, 1 KiB blocks, 4 groups of 1024 blocks from block 1 (the last has 1023), flex_bg:
 * all bitmaps and inode tables (4 × 32 blocks) in group 0 after the superblock (1), the
 * descriptor table (2) and 2 reserved GDT blocks (3-4). sparse_super: groups 0, 1 and 3 carry
 * superblock + table + reserved blocks; groups 2 and 3 are BLOCK_UNINIT.
 */
function layoutA(overrides: Partial<Layout> = {}): Layout {
  return {
    blockSize: 1024,
    firstDataBlock: 1,
    blocksPerGroup: 1024,
    blocksCount: 4096,
    descBytes: 64,
    checksum: 'crc32c',
    flexBg: true,
    reservedGdt: 2,
    inodesPerGroup: 128,
    inodeSize: 256,
    groups: [
      { bb: 5, ib: 9, it: 13 },
      { bb: 6, ib: 10, it: 45 },
      { bb: 7, ib: 11, it: 77, uninit: true },
      { bb: 8, ib: 12, it: 109, uninit: true },
    ],
    descBlocks: [2],
    used: [[1, 161], [1025, 1029], [1100, 1200], [3073, 3077]],
    ...overrides,
  };
}
const FREE_A: Array<[number, number]> = [[161, 1025], [1029, 1100], [1200, 3073], [3077, 4096]];

/**
 * Layout B's base metadata per group, by blockgroup.rst: 1 KiB blocks, 64-byte descriptors
 * (16 per block), 40 groups of 256 blocks, s_first_meta_bg 1, no reserved GDT blocks. Groups
 * 0-15 use the old layout: those with a superblock (0, 1, 3, 5, 7, 9) also carry the one
 * old-style table block. Later meta groups put their descriptor block in their first, second
 * and last group (16, 17, 31; 32, 33), after a superblock if any (25 and 27 have one alone).
 */
const BASE_B: Record<number, number> = { 0: 2, 1: 2, 3: 2, 5: 2, 7: 2, 9: 2, 16: 1, 17: 1, 25: 1, 27: 1, 31: 1, 32: 1, 33: 1 };

/** Layout B: meta_bg, no flex_bg: each group's bitmaps and 2-block inode table follow its base metadata. */
function layoutB(): Layout {
  const groups: Layout['groups'] = [];
  const used: Layout['used'] = [];
  for (let g = 0; g < 40; g++) {
    const first = 1 + g * 256;
    const meta = first + (BASE_B[g] ?? 0);
    groups.push({ bb: meta, ib: meta + 1, it: meta + 2 });
    used.push([first, meta + 4]);
  }
  used.push([7, 31], [5000, 5100]);
  return {
    blockSize: 1024,
    firstDataBlock: 1,
    blocksPerGroup: 256,
    blocksCount: 1 + 40 * 256,
    descBytes: 64,
    checksum: 'none',
    firstMetaBg: 1,
    reservedGdt: 0,
    inodesPerGroup: 16,
    inodeSize: 128,
    groups,
    descBlocks: [2, 4097, 8193],
    used,
  };
}

/** Layout H: 64 KiB blocks, 2^32 + 2^20 + 1000 of them (256 TiB), 8195 groups, sparse_super2 (1 and 8194). */
const H = { groups: 8195, perGroup: 524288, blocks: 2 ** 32 + 2 ** 20 + 1000 };
function layoutH(): Layout {
  const G = H.groups;
  const last = (G - 1) * H.perGroup;
  return {
    blockSize: 65536,
    firstDataBlock: 0,
    blocksPerGroup: H.perGroup,
    blocksCount: H.blocks,
    descBytes: 64,
    checksum: 'crc32c',
    flexBg: true,
    backupGroups: [1, G - 1],
    reservedGdt: 0,
    inodesPerGroup: 256,
    inodeSize: 256,
    groups: Array.from({ length: G }, (_, g) => ({ bb: 10 + g, ib: 10 + G + g, it: 10 + 2 * G + g, uninit: g > 0 })),
    descBlocks: Array.from({ length: 9 }, (_, i) => 1 + i),
    // Superblock (0) and 9 table blocks, then 3 × 8195 bitmap and inode-table blocks, then 5 of data.
    used: [[0, 10 + 3 * G + 5], [H.perGroup, H.perGroup + 10], [last, last + 10]],
  };
}

/** [start, end) block ranges of [from, to) not covered by `used`. */
function complementBlocks(used: Array<[number, number]>, from: number, to: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let cursor = from;
  for (const [a, b] of [...used].sort((x, y) => x[0] - y[0])) {
    if (a > cursor) out.push([cursor, a]);
    cursor = Math.max(cursor, b);
  }
  if (cursor < to) out.push([cursor, to]);
  return out;
}

function blocksToBytes(blocks: Array<[number, number]>, blockSize: number): Array<{ start: number; end: number }> {
  return blocks.map(([a, b]) => ({ start: a * blockSize, end: b * blockSize }));
}

async function reasonOf(map: Promise<FreeMap>): Promise<string> {
  const m = await map;
  return m.trusted ? 'trusted' : m.reason;
}

describe('ext checksums and decoders', () => {
  const ascii = new TextEncoder().encode('123456789');
  it('crc16 gives the catalogued check value', () => {
    expect(crc16Update(0xffff, ascii)).toBe(0x4b37); // CRC-16/MODBUS: poly 0x8005 reflected, init 0xFFFF
  });

  it('parses 32- and 64-byte group descriptors, high halves only in the wide one', () => {
    const desc = new Uint8Array(64);
    const v = new DataView(desc.buffer);
    v.setUint32(0x0, 0x11, true);
    v.setUint32(0x20, 0x2, true);
    v.setUint16(0xc, 0x1234, true);
    v.setUint16(0x2c, 0x1, true);
    v.setUint16(0x12, 0x3, true);
    expect(parseGroupDescriptor(desc)).toMatchObject({ blockBitmap: 0x2_0000_0011, freeClusters: 0x1_1234, flags: 3 });
    expect(parseGroupDescriptor(desc.subarray(0, 32))).toMatchObject({ blockBitmap: 0x11, freeClusters: 0x1234 });
    expect(() => parseGroupDescriptor(desc.subarray(0, 40))).toThrow(/40 bytes/);
  });

  it('turns bitmaps into free runs, with a partial last byte and byte fast paths', () => {
    const bitmap = Uint8Array.from([0xff, 0x00, 0x00, 0b1000_0001, 0xff, 0x0f]);
    expect(parseBitmapFreeRuns(bitmap, 46)).toEqual({ runs: [8, 24, 25, 31, 44, 46], freeBits: 24 });
    expect(parseBitmapFreeRuns(bitmap, 44)).toEqual({ runs: [8, 24, 25, 31], freeBits: 22 });
    expect(firstClearBit(bitmap, 0, 8)).toBe(-1);
    expect(firstClearBit(bitmap, 24, 32)).toBe(25);
    expect(complementRuns(20, [0, 3, 2, 5, 10, 25])).toEqual({ runs: [5, 10], freeBits: 5 });
  });

  it('finds superblock backups: sparse_super, sparse_super2, neither', () => {
    const base = parseExtSuper(buildExt(layoutA()).bytesAt(1024, 1024));
    const groups = (s: ExtSuper): number[] => [...Array(130).keys()].filter((g) => groupHasSuper(s, g));
    expect(groups(base)).toEqual([0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125]);
    expect(groups({ ...base, backupGroups: [1, 77] })).toEqual([0, 1, 77]);
    expect(groups({ ...base, sparseSuper: false })).toHaveLength(130);
  });

  it('places descriptor blocks and base metadata with meta_bg (s_first_meta_bg 1, 16 per block)', () => {
    const s = parseExtSuper(buildExt(layoutB()).bytesAt(1024, 1024));
    expect([0, 1, 2].map((i) => descriptorBlock(s, i))).toEqual([2, 4097, 8193]);
    const base = [...Array(40).keys()].map((g) => baseMetaBlocks(s, g));
    expect(Object.fromEntries(base.map((n, g) => [g, n]).filter(([, n]) => n))).toEqual(BASE_B);
  });
});

describe('ext superblock checks', () => {
  const raw = (l: Layout): Uint8Array => buildExt(l).bytesAt(1024, 1024);
  it.each([
    ['bad magic', 0x38, 0x1234, 2, /no ext2\/3\/4/],
    ['64 KiB << 1 blocks', 0x18, 7, 4, /no ext2\/3\/4/],
    ['s_desc_size 48', 0xfe, 48, 2, /s_desc_size 48/],
    ['s_first_data_block 0 with 1 KiB blocks', 0x14, 0, 4, /s_first_data_block 0/],
    ['s_blocks_per_group 100', 0x20, 100, 4, /s_blocks_per_group 100/],
    ['cluster size without bigalloc', 0x1c, 2, 4, /cluster size/],
    ['s_reserved_gdt_blocks 300', 0xce, 300, 2, /s_reserved_gdt_blocks 300/],
  ])('BAD_IMAGE: %s', (name, offset, value, width, message) => {
    const sb = raw(layoutA());
    const v = new DataView(sb.buffer);
    if (width === 2) v.setUint16(offset, value, true);
    else v.setUint32(offset, value, true);
    expect(() => parseExtSuper(sb)).toThrow(message);
    try {
      parseExtSuper(sb);
    } catch (err) {
      expect(isSparsifyError(err, 'BAD_IMAGE')).toBe(true);
    }
  });

  it.each([
    ['clean', {}, undefined],
    ['not clean', { state: 0 }, /not cleanly unmounted/],
    ['errors', { state: 3 }, /has errors/],
    ['orphans being recovered', { state: 5 }, /being recovered/],
    ['needs_recovery', { incompat: 0x4 }, /needs recovery/],
    ['orphan list', { lastOrphan: 12 }, /s_last_orphan 12/],
    ['orphan_present', { roCompat: 0x10000 }, /orphan file/],
    ['unknown incompat', { incompat: 0x1 }, /unknown incompat features 0x1$/],
    ['snapshot ro_compat', { roCompat: 0x80 }, /unknown ro_compat features 0x80/],
  ])('trust from the superblock: %s', (name, superFields, reason) => {
    const sb = raw(layoutA({ superFields }));
    const why = extSuperDistrust(parseExtSuper(sb), sb);
    if (reason) expect(why).toMatch(reason);
    else expect(why).toBeUndefined();
  });

  it('a superblock checksum mismatch, and a checksum type that is not crc32c', () => {
    const sb = raw(layoutA());
    sb[0x78] = 0x41;
    expect(extSuperDistrust(parseExtSuper(sb), sb)).toMatch(/superblock checksum mismatch/);
    const other = raw(layoutA());
    other[0x175] = 2;
    expect(extSuperDistrust(parseExtSuper(other), other)).toMatch(/checksum type 2/);
  });
});

describe('readExtFreeMap on synthetic filesystems', () => {
  it('layout A: the free blocks, no metadata; reads only the superblock, the table and two bitmaps', async () => {
    const img = buildExt(layoutA());
    const map = await readExtFreeMap(img.reader);
    if (!map.trusted) throw new Error(map.reason);
    expect(map.free.ranges).toEqual(blocksToBytes(FREE_A, 1024));
    expect(map.unitBytes).toBe(1024);
    expect(map.counterFreeBytes).toBe(map.free.totalBytes);
    expect(map.detail).toBe('ext4, 1024-byte blocks, 4 groups (2 BLOCK_UNINIT)');
    expect(img.reads).toEqual([[1024, 1024], [2048, 1024], [5 * 1024, 2 * 1024]]);
  });

  it.each([
    ['gdt_csum (crc16), 32-byte descriptors', { checksum: 'crc16', descBytes: 32 }],
    ['no descriptor checksums: BLOCK_UNINIT is ignored, every bitmap read', { checksum: 'none' }],
  ] as const)('layout A with %s', async (name, overrides) => {
    const map = await readExtFreeMap(buildExt(layoutA(overrides)).reader);
    expect(map.trusted && map.free.ranges).toEqual(blocksToBytes(FREE_A, 1024));
  });

  it('layout B (meta_bg from the second meta group on): exactly the blocks not in use', async () => {
    const l = layoutB();
    const map = await readExtFreeMap(buildExt(l).reader);
    expect(map.trusted && map.free.ranges).toEqual(blocksToBytes(complementBlocks(l.used, 1, l.blocksCount), 1024));
  });

  it('layout H: 2^32+ blocks of 64 KiB, mostly BLOCK_UNINIT, in three reads of at most 1 MiB', async () => {
    const img = buildExt(layoutH());
    const map = await readExtFreeMap(img.reader);
    if (!map.trusted) throw new Error(map.reason);
    const last = (H.groups - 1) * H.perGroup;
    const free: Array<[number, number]> = [[10 + 3 * H.groups + 5, H.perGroup], [H.perGroup + 10, last], [last + 10, H.blocks]];
    expect(map.free.ranges).toEqual(blocksToBytes(free, 65536));
    expect(map.free.ranges.at(-1)!.end).toBe(H.blocks * 65536);
    expect(img.reads).toHaveLength(3);
    expect(Math.max(...img.reads.map(([, n]) => n))).toBeLessThanOrEqual(1024 * 1024);
  });

  it('BLOCK_UNINIT is computed conservatively: another group\'s inode table inside it stays used', async () => {
    const groups = layoutA().groups.map((g, i) => (i === 1 ? { ...g, it: 2100 } : g));
    const honest = layoutA({ groups, used: [...layoutA().used, [2100, 2132]] });
    const map = await readExtFreeMap(buildExt(honest).reader);
    expect(map.trusted && map.free.covers(2099 * 1024, 2101 * 1024)).toBe(false);
    // The kernel's ext4_init_block_bitmap would count those blocks free: we refuse instead.
    const kernelCount = layoutA({ groups });
    expect(await reasonOf(readExtFreeMap(buildExt(kernelCount).reader))).toMatch(
      /group 2: its computed BLOCK_UNINIT bitmap has 992 free blocks, its descriptor says 1024/,
    );
  });

  it('untrusted when a bitmap bit is flipped: checksum, or population without checksums', async () => {
    const flip = (img: SparseImage): void => img.write(6 * 1024 + 34, Uint8Array.of(img.bytesAt(6 * 1024 + 34, 1)[0]! ^ 0x08));
    const withCsum = buildExt(layoutA());
    flip(withCsum);
    expect(await reasonOf(readExtFreeMap(withCsum.reader))).toBe('ext4: group 1: block bitmap checksum mismatch');
    const plain = buildExt(layoutA({ checksum: 'none' }));
    flip(plain);
    expect(await reasonOf(readExtFreeMap(plain.reader))).toMatch(/group 1: its block bitmap has 919 free blocks, its descriptor says 920/);
  });

  it('untrusted when a bitmap marks metadata free even with the right population', async () => {
    const img = buildExt(layoutA({ checksum: 'none' }));
    const at = 6 * 1024;
    img.write(at, Uint8Array.of(img.bytesAt(at, 1)[0]! & ~0x01));
    img.write(at + 34, Uint8Array.of(img.bytesAt(at + 34, 1)[0]! | 0x08));
    expect(await reasonOf(readExtFreeMap(img.reader))).toMatch(/group 1: block bitmap marks metadata block 1025 free/);
  });

  it.each([
    ['the superblock count is off', { superFields: { freeDelta: 1 } }, /groups have 3827 free blocks, the superblock says 3828/],
    ['a descriptor count is off', { countSkew: { 0: 1 } }, /group 0: its block bitmap has 864 free blocks, its descriptor says 865/],
    ['the volume is shorter than the filesystem', { volumeBytes: 4000 * 1024 }, /larger than its 4096000-byte volume/],
    ['MMP says the filesystem is held', { mmp: { block: 150, seq: 0x12345678 } }, /MMP sequence 0x12345678/],
    ['MMP clean', { mmp: { block: 150, seq: 0xff4d4d50 } }, /^trusted$/],
  ] as const)('untrusted when %s', async (name, overrides, reason) => {
    expect(await reasonOf(readExtFreeMap(buildExt(layoutA(overrides as Partial<Layout>)).reader))).toMatch(reason);
  });

  it('untrusted on a descriptor checksum mismatch, naming the descriptor and its byte', async () => {
    const img = buildExt(layoutA());
    img.write(2048 + 2 * 64 + 0xc, Uint8Array.of(7));
    expect(await reasonOf(readExtFreeMap(img.reader))).toBe('ext4: group descriptor 2 at byte 2176: checksum mismatch');
  });

  it('BAD_IMAGE when a descriptor points outside the filesystem', async () => {
    const groups = layoutA().groups.map((g, i) => (i === 1 ? { ...g, bb: 5000 } : g));
    await expect(readExtFreeMap(buildExt(layoutA({ groups })).reader)).rejects.toMatchObject({
      code: 'BAD_IMAGE',
      message: 'ext4 group descriptor 1 at byte 2112: block bitmap at block 5000 is outside the filesystem (blocks 5-4095)',
    });
  });

  it('BAD_IMAGE on a volume too small for a superblock', async () => {
    const img = new SparseImage(1500);
    await expect(readExtFreeMap(img.reader)).rejects.toMatchObject({ code: 'BAD_IMAGE' });
  });
});

/** Re-signs the superblock, descriptors and bitmaps after a mutation, so it reaches the deeper checks. */
function resign(bytes: Uint8Array): void {
  const img = { bytesAt: (o: number, n: number) => bytes.subarray(o, o + n), write: (o: number, b: Uint8Array) => bytes.set(b, o) };
  try {
    const s = parseExtSuper(bytes.subarray(1024, 2048));
    const perBlock = s.descriptorsPerBlock;
    for (let g = 0; g < Math.min(s.groupCount, 64); g++) {
      const at = descriptorBlock(s, Math.floor(g / perBlock)) * s.blockSizeBytes + (g % perBlock) * s.descriptorBytes;
      if (at + s.descriptorBytes > bytes.length) break;
      const desc = bytes.subarray(at, at + s.descriptorBytes);
      const d = parseGroupDescriptor(desc);
      const bitmapAt = d.blockBitmap * s.blockSizeBytes;
      if (bitmapAt + s.blockSizeBytes <= bytes.length) {
        const crc = crc32cUpdate(s.checksumSeed, bytes.subarray(bitmapAt, bitmapAt + s.clustersPerGroup / 8));
        new DataView(desc.buffer, desc.byteOffset).setUint16(0x18, crc & 0xffff, true);
        if (s.descriptorBytes >= 64) new DataView(desc.buffer, desc.byteOffset).setUint16(0x38, crc >>> 16, true);
      }
      new DataView(desc.buffer, desc.byteOffset).setUint16(0x1e, groupDescriptorChecksum(s, g, desc) ?? 0, true);
    }
  } catch {
    // A superblock too damaged to parse is left as it is.
  }
  fixSuperChecksum(img);
}

describe('fuzz', () => {
  it('2000 damaged copies of layout A: a map no larger than the truth, or a SparsifyError', async () => {
    const pristine = buildExt(layoutA()).bytesAt(0, 4096 * 1024);
    const image = pristine.slice();
    const truth = await readExtFreeMap(buildExt(layoutA()).reader);
    if (!truth.trusted) throw new Error(truth.reason);
    const zones: Array<[number, number]> = [[1024, 1024], [2048, 4 * 64], [5 * 1024, 4 * 1024], [0, image.length]];
    const reader: BlockReader = {
      sizeBytes: image.length,
      read: (off, len) =>
        off < 0 || off + len > image.length
          ? Promise.reject(new RangeError(`read ${off}+${len} outside the image`))
          : Promise.resolve(image.slice(off, off + len)),
    };
    let seed = 0x5eed;
    const next = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const outcomes = { trusted: 0, untrusted: 0, bad: 0 };
    for (let i = 0; i < 2000; i++) {
      const touched: number[] = [];
      for (let k = 1 + next(4); k > 0; k--) {
        const [at, length] = zones[next(zones.length)]!;
        const offset = at + next(length);
        touched.push(offset);
        image[offset] = image[offset]! ^ (1 << next(8));
      }
      if (i % 2) resign(image);
      try {
        const map = await readExtFreeMap(reader);
        outcomes[map.trusted ? 'trusted' : 'untrusted']++;
        if (map.trusted) expect(map.free.subtract(truth.free).ranges).toEqual([]);
      } catch (err) {
        if (!isSparsifyError(err)) throw err;
        outcomes.bad++;
      }
      image.set(pristine.subarray(0, 9 * 1024));
      for (const offset of touched) image[offset] = pristine[offset]!;
    }
    expect(outcomes.trusted).toBeGreaterThan(100);
    expect(outcomes.untrusted).toBeGreaterThan(100);
    expect(outcomes.bad).toBeGreaterThan(10);
  }, 60_000);
});
