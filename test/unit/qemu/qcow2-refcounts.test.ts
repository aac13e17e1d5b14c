import { describe, expect, it } from 'vitest';
import { MemorySource } from '../../helpers/memory-block.js';
import { isSparsifyError } from '../../../src/errors.js';
import { parseQcow2Header, QCOW2_INCOMPAT, readFreeClusters, type FreeClusters } from '../../../src/qemu/qcow2-refcounts.js';

// A hand-built qcow2 v3 image with 512-byte clusters:
//   0 header | 1 refcount table | 2 refcount block | 3 L1 table | 4 L2 table
//   5, 6 data (guest clusters 0, 1) | 7 free | 8 data (guest cluster 2)
//   9–10 one compressed cluster that starts inside 9 and spills into 10 (guest cluster 3) | 11 free
const CS = 512;
const CLUSTERS = 12;
const USED = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10];

interface Image {
  bytes: Uint8Array;
  view: DataView;
  refcountOrder: number;
}

function setRefcount(img: Image, cluster: number, value: number, blockOffset = 2 * CS): void {
  const bits = 2 ** img.refcountOrder;
  const perBlock = (CS * 8) / bits;
  const i = cluster % perBlock;
  if (bits < 8) {
    const at = blockOffset + ((i * bits) >> 3);
    const shift = (i * bits) & 7;
    const mask = ((1 << bits) - 1) << shift;
    img.bytes[at] = (img.bytes[at]! & ~mask) | ((value << shift) & mask);
  } else {
    const width = bits / 8;
    for (let b = 0; b < width; b++) img.bytes[blockOffset + i * width + width - 1 - b] = (value >> (8 * b)) & 0xff;
  }
}

function build(opts: { refcountOrder?: number; clusters?: number } = {}): Image {
  const refcountOrder = opts.refcountOrder ?? 4;
  const bytes = new Uint8Array((opts.clusters ?? CLUSTERS) * CS);
  const view = new DataView(bytes.buffer);
  const img = { bytes, view, refcountOrder };
  view.setUint32(0, 0x514649fb);
  view.setUint32(4, 3);
  view.setUint32(20, 9); // cluster_bits
  view.setBigUint64(24, 64n * 1024n); // virtual size
  view.setUint32(36, 1); // l1_size
  view.setBigUint64(40, BigInt(3 * CS)); // l1_table_offset
  view.setBigUint64(48, BigInt(1 * CS)); // refcount_table_offset
  view.setUint32(56, 1); // refcount_table_clusters
  view.setUint32(96, refcountOrder);
  view.setUint32(100, 104); // header_length
  view.setBigUint64(1 * CS, BigInt(2 * CS)); // refcount table entry 0 → block at cluster 2
  view.setBigUint64(3 * CS, (1n << 63n) | BigInt(4 * CS)); // L1 entry 0 → L2 at cluster 4 (copied flag set)
  for (const [guest, host] of [[0, 5], [1, 6], [2, 8]] as const) view.setBigUint64(4 * CS + guest * 8, (1n << 63n) | BigInt(host * CS));
  // Compressed descriptor for cluster_bits 9: offset in bits 0–60, extra sectors in bit 61.
  view.setBigUint64(4 * CS + 3 * 8, (1n << 62n) | (1n << 61n) | BigInt(9 * CS + 300));
  for (const c of USED) setRefcount(img, c, 1);
  return img;
}

async function freeOf(img: Image, fileSizeBytes = img.bytes.length): Promise<FreeClusters> {
  return readFreeClusters(new MemorySource(img.bytes), fileSizeBytes);
}

async function reasonOf(img: Image, fileSizeBytes?: number): Promise<string> {
  const res = await freeOf(img, fileSizeBytes);
  if (res.ok) throw new Error('expected the image to be refused');
  return res.reason;
}

function headerError(mutate: (view: DataView) => void, length = 512): unknown {
  const img = build();
  mutate(img.view);
  try {
    parseQcow2Header(img.bytes.subarray(0, length));
  } catch (err) {
    return err;
  }
  throw new Error('expected a BAD_IMAGE error');
}

describe('parseQcow2Header', () => {
  it('decodes a version 3 header', () => {
    expect(parseQcow2Header(build().bytes)).toMatchObject({
      version: 3, clusterBits: 9, clusterSizeBytes: 512, virtualSizeBytes: 65536, l1Entries: 1, l1TableOffsetBytes: 1536,
      refcountTableOffsetBytes: 512, refcountTableClusters: 1, snapshotCount: 0, incompatibleFeatures: 0n, refcountOrder: 4, headerLengthBytes: 104,
    });
  });

  it('gives version 2 its fixed refcount order and header length', () => {
    const img = build();
    img.view.setUint32(4, 2);
    img.view.setUint32(96, 6); // not a v2 field: ignored
    expect(parseQcow2Header(img.bytes.subarray(0, 72))).toMatchObject({ version: 2, refcountOrder: 4, headerLengthBytes: 72, incompatibleFeatures: 0n });
  });

  it.each([
    ['bad magic', (v: DataView) => v.setUint32(0, 0x514649fc), /offset 0: bad magic/],
    ['version 4', (v: DataView) => v.setUint32(4, 4), /offset 4: unsupported version 4/],
    ['cluster_bits 8', (v: DataView) => v.setUint32(20, 8), /offset 20: cluster_bits 8 is outside 9..21/],
    ['cluster_bits 22', (v: DataView) => v.setUint32(20, 22), /offset 20: cluster_bits 22/],
    ['refcount_order 7', (v: DataView) => v.setUint32(96, 7), /offset 96: refcount_order 7/],
    ['unaligned L1 table', (v: DataView) => v.setBigUint64(40, 1000n), /offset 40: l1_table_offset 1000 is not a cluster-aligned file offset/],
    ['huge refcount table offset', (v: DataView) => v.setBigUint64(48, 1n << 60n), /offset 48: refcount_table_offset/],
    ['header_length 100', (v: DataView) => v.setUint32(100, 100), /offset 100: header_length 100/],
    ['header_length 108', (v: DataView) => v.setUint32(100, 108), /offset 100: bad header_length 108/],
    ['crypt_method 3', (v: DataView) => v.setUint32(32, 3), /offset 32: unknown crypt_method 3/],
    ['long backing file name', (v: DataView) => (v.setBigUint64(8, 400n), v.setUint32(16, 200)), /offset 8: backing file name/],
  ])('throws BAD_IMAGE at the field: %s', (_name, mutate, message) => {
    const err = headerError(mutate);
    expect(isSparsifyError(err, 'BAD_IMAGE')).toBe(true);
    expect((err as Error).message).toMatch(/^qcow2 header at /);
    expect((err as Error).message).toMatch(message);
  });

  it('throws BAD_IMAGE on a buffer too short for the header', () => {
    expect((headerError(() => {}, 60) as Error).message).toMatch(/only 60 bytes/);
    expect((headerError(() => {}, 80) as Error).message).toMatch(/only 80 bytes of a version 3 header/);
  });
});

describe('readFreeClusters', () => {
  it.each([0, 1, 2, 3, 4, 5, 6])('finds exactly the clusters with refcount 0 (refcount_order %i)', async (order) => {
    const res = await freeOf(build({ refcountOrder: order }));
    expect(res).toMatchObject({ ok: true, clusterSizeBytes: CS, freeBytes: 2 * CS });
    if (res.ok) expect(res.free.ranges).toEqual([{ start: 7 * CS, end: 8 * CS }, { start: 11 * CS, end: 12 * CS }]);
  });

  it('counts a refcount above 1 as in use, and only whole clusters below the file size', async () => {
    const img = build();
    setRefcount(img, 5, 2);
    const res = await freeOf(img, 11 * CS + 100);
    expect(res.ok && res.free.ranges).toEqual([{ start: 7 * CS, end: 8 * CS }]);
  });

  it.each([
    ['dirty', QCOW2_INCOMPAT.DIRTY, /dirty bit/],
    ['corrupt', QCOW2_INCOMPAT.CORRUPT, /marked corrupt/],
    ['external data file', QCOW2_INCOMPAT.EXTERNAL_DATA_FILE, /external data file/],
    ['unknown bit 5', 1n << 5n, /unknown incompatible features 0x20/],
  ])('refuses a %s image', async (_name, bit, reason) => {
    const img = build();
    img.view.setBigUint64(72, bit);
    expect(await reasonOf(img)).toMatch(reason);
  });

  it('accepts the compression type bit', async () => {
    const img = build();
    img.view.setBigUint64(72, QCOW2_INCOMPAT.COMPRESSION_TYPE);
    expect((await freeOf(img)).ok).toBe(true);
  });

  it('refuses a refcount table outside the file or on the header', async () => {
    const img = build();
    img.view.setUint32(56, 20);
    expect(await reasonOf(img)).toMatch(/^refcount table: bytes 512\.\.10752 lie outside the 6144-byte file/);
    img.view.setUint32(56, 1);
    img.view.setBigUint64(48, 0n);
    expect(await reasonOf(img)).toMatch(/^refcount table: offset 0 overlaps the header/);
  });

  it('refuses a refcount block outside the file, on the refcount table, or with reserved bits', async () => {
    const img = build();
    img.view.setBigUint64(CS, BigInt(40 * CS));
    expect(await reasonOf(img)).toMatch(/refcount block of refcount table entry 0: bytes 20480\.\.20992 lie outside/);
    img.view.setBigUint64(CS, BigInt(CS));
    expect(await reasonOf(img)).toMatch(/overlaps the refcount table/);
    img.view.setBigUint64(CS, BigInt(2 * CS + 1));
    expect(await reasonOf(img)).toMatch(/refcount table entry 0 has reserved bits/);
    img.view.setBigUint64(CS, BigInt(2 * CS));
    img.view.setBigUint64(CS + 8, BigInt(2 * CS));
    expect(await reasonOf(img)).toBe('two refcount table entries share one refcount block');
  });

  it('refuses when a data cluster in use has refcount 0', async () => {
    const img = build();
    setRefcount(img, 6, 0);
    expect(await reasonOf(img)).toBe('refcounts disagree with the L1/L2 tables at cluster 6: it is in use but its refcount is 0');
  });

  it.each([
    ['header', 0, /the header at cluster 0/],
    ['refcount table', 1, /the refcount table at cluster 1/],
    ['refcount block', 2, /the refcount blocks at cluster 2/],
    ['L1 table', 3, /the L1\/L2 tables at cluster 3/],
    ['L2 table', 4, /the L1\/L2 tables at cluster 4/],
    ['second cluster of a compressed cluster', 10, /the L1\/L2 tables at cluster 10/],
  ])('refuses when the %s has refcount 0', async (_name, cluster, reason) => {
    const img = build();
    setRefcount(img, cluster, 0);
    expect(await reasonOf(img)).toMatch(reason);
  });

  it('refuses references outside the file, unaligned, or with reserved bits', async () => {
    const img = build();
    img.view.setBigUint64(4 * CS, BigInt(30 * CS));
    expect(await reasonOf(img)).toMatch(/^L1\/L2 tables: bytes 15360\.\.15872 lie outside the 6144-byte file/);
    img.view.setBigUint64(4 * CS, BigInt(5 * CS + 512 * 4096));
    expect(await reasonOf(img)).toMatch(/lie outside/);
    img.view.setBigUint64(4 * CS, (1n << 63n) | BigInt(5 * CS + 2));
    expect(await reasonOf(img)).toMatch(/an L2 entry of the L1\/L2 tables has reserved bits set/);
    img.view.setBigUint64(4 * CS, 1n << 63n);
    expect(await reasonOf(img)).toMatch(/maps host offset 0/);
    img.view.setBigUint64(4 * CS, 0n);
    img.view.setBigUint64(3 * CS, (1n << 62n) | BigInt(4 * CS));
    expect(await reasonOf(img)).toMatch(/L1 entry 0 of the L1\/L2 tables has reserved bits set/);
    img.view.setBigUint64(3 * CS, BigInt(40 * CS));
    expect(await reasonOf(img)).toMatch(/L2 table of L1 entry 0 of the L1\/L2 tables: bytes 20480/);
  });

  it('reads extended L2 entries as 128 bits', async () => {
    const img = build();
    img.view.setBigUint64(72, QCOW2_INCOMPAT.EXTENDED_L2);
    img.bytes.fill(0, 4 * CS, 5 * CS);
    img.view.setBigUint64(4 * CS, BigInt(5 * CS));
    img.view.setBigUint64(4 * CS + 8, 0xffffffffn); // subcluster bitmap: not an offset
    img.view.setBigUint64(4 * CS + 16, BigInt(6 * CS));
    setRefcount(img, 8, 0);
    setRefcount(img, 9, 0);
    setRefcount(img, 10, 0);
    const res = await freeOf(img);
    expect(res.ok && res.free.ranges).toEqual([{ start: 7 * CS, end: 12 * CS }]);
  });

  it('counts clusters under a zero refcount table entry as free, and those past the table as not', async () => {
    // refcount_order 6: 64 clusters per block; a 1-cluster table covers 64 blocks = 4096 clusters.
    const img = build({ refcountOrder: 6, clusters: 4100 });
    const res = await freeOf(img);
    expect(res.ok && res.free.ranges).toEqual([
      { start: 7 * CS, end: 8 * CS },
      { start: 11 * CS, end: 4096 * CS },
    ]);
    img.view.setBigUint64(4 * CS, BigInt(4097 * CS));
    expect(await reasonOf(img)).toMatch(/cluster 4097, used by the L1\/L2 tables, is not covered by the refcount table/);
    img.view.setBigUint64(4 * CS, BigInt(100 * CS));
    expect(await reasonOf(img)).toMatch(/refcounts disagree with the L1\/L2 tables at cluster 100/);
  });

  it('walks internal snapshots: their clusters are in use, and must be refcounted', async () => {
    const img = build();
    // Snapshot table at cluster 11: one entry whose L1 table (cluster 7) maps guest cluster 0 through the same L2.
    img.view.setUint32(60, 1);
    img.view.setBigUint64(64, BigInt(11 * CS));
    img.view.setBigUint64(11 * CS, BigInt(7 * CS));
    img.view.setUint32(11 * CS + 8, 1);
    img.view.setUint16(11 * CS + 12, 1); // id "1"
    img.view.setUint32(11 * CS + 36, 16); // extra data
    img.view.setBigUint64(7 * CS, BigInt(4 * CS));
    expect(await reasonOf(img)).toMatch(/refcounts disagree with the snapshot table at cluster 11/);
    setRefcount(img, 11, 1);
    expect(await reasonOf(img)).toMatch(/refcounts disagree with the L1\/L2 tables of snapshot 0 at cluster 7/);
    setRefcount(img, 7, 1);
    expect(await freeOf(img)).toMatchObject({ ok: true, freeBytes: 0 });
    img.view.setUint32(60, 13); // entries after the first are zeros: 40 bytes each
    expect(await reasonOf(img)).toMatch(/snapshot table entry 12: bytes 6136\.\.6176 lie outside/);
  });

  it('claims the clusters a bitmap uses', async () => {
    const img = build();
    // Bitmaps extension → directory at cluster 7 → bitmap table at cluster 11 → data cluster 7 (reused for brevity).
    img.view.setUint32(104, 0x23852875);
    img.view.setUint32(108, 24);
    img.view.setUint32(112, 1);
    img.view.setBigUint64(120, 32n);
    img.view.setBigUint64(128, BigInt(7 * CS));
    img.view.setBigUint64(7 * CS, BigInt(11 * CS));
    img.view.setUint32(7 * CS + 8, 1);
    img.view.setUint16(7 * CS + 18, 2); // name "b0"
    img.view.setBigUint64(11 * CS, BigInt(7 * CS));
    expect(await reasonOf(img)).toMatch(/refcounts disagree with the bitmap directory at cluster 7/);
    setRefcount(img, 7, 1);
    expect(await reasonOf(img)).toMatch(/refcounts disagree with the bitmap 0 at cluster 11/);
    setRefcount(img, 11, 1);
    expect(await freeOf(img)).toMatchObject({ ok: true, freeBytes: 0 });
  });

  it('refuses a truncated file and rejects a size the reader does not have', async () => {
    const img = build();
    expect(await reasonOf(img, 8 * CS)).toMatch(/lie outside the 4096-byte file/);
    await expect(freeOf(img, 13 * CS)).rejects.toThrow(RangeError);
    await expect(freeOf(img, 60)).rejects.toThrow(/qcow2 header at offset 0: only 60 bytes/);
  });
});
