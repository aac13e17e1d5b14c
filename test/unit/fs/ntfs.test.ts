/**
 * The NTFS map reader on synthetic volumes built here, byte by byte, from the on-disk layouts
 * (Linux-NTFS "NTFS Documentation"; ntfs-3g layout.h and logfile.h): boot sector, MFT records
 * with update sequence arrays, resident and non-resident attributes, attribute lists, a root
 * directory index with an INDX block, $LogFile restart pages, and a $Bitmap.
 */
import { describe, expect, it } from 'vitest';
import { ExtentSet, type Range } from '../../../src/disk/extent-set.js';
import { isSparsifyError } from '../../../src/errors.js';
import { freeClusterRuns } from '../../../src/fs/ntfs-bitmap.js';
import { parseLogFileState } from '../../../src/fs/ntfs-logfile.js';
import { parseAttributes, parseMftRecord } from '../../../src/fs/ntfs-record.js';
import { parseAttributeList } from '../../../src/fs/ntfs-stream.js';
import { parseDataRuns, type DataRun } from '../../../src/fs/ntfs-runs.js';
import { readNtfsFreeMap } from '../../../src/fs/ntfs.js';
import type { FreeMap } from '../../../src/fs/types.js';
import { hasAscii } from '../../../src/layout/bytes.js';
import { prng } from '../../helpers/copy-fakes.js';
import { flip, memReader, putAscii, view } from '../layout/fixtures.js';

const SECTOR = 512;
const RECORD = 1024;
const KiB = 1024;
/** Where the builder puts each structure, in volume bytes (multiples of every cluster size used). */
const AT = {
  mft: 16 * KiB,
  mftTail: 192 * KiB,
  mirror: 48 * KiB,
  log: 64 * KiB,
  bitmapTail: 88 * KiB,
  bitmap: 96 * KiB,
  hiberfil: 128 * KiB,
  indexBlock: 144 * KiB,
  userArea: 224 * KiB,
} as const;
const LOG_BYTES = 16 * KiB;
const MFT_RECORDS = 32;
/** Records in the first $MFT extent when it has two. */
const MFT_HEAD_RECORDS = 24;
const HIBERFIL_RECORD = 20;

// ---------------------------------------------------------------- encoders

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

function utf16(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) view(out).setUint16(2 * i, text.charCodeAt(i), true);
  return out;
}

/** The fewest bytes holding `value` as a little-endian two's-complement integer. */
function signedBytes(value: number): number[] {
  const out: number[] = [];
  let v = BigInt(value);
  for (;;) {
    const byte = Number(v & 0xffn);
    out.push(byte);
    v >>= 8n;
    if ((v === 0n && byte < 0x80) || (v === -1n && byte >= 0x80)) return out;
  }
}

/** Mapping pairs for runs; `lcn: undefined` is sparse. */
function encodeRuns(runs: readonly { lcn?: number; clusters: number }[]): Uint8Array {
  const out: number[] = [];
  let previous = 0;
  for (const run of runs) {
    const length = signedBytes(run.clusters);
    const delta = run.lcn === undefined ? [] : signedBytes(run.lcn - previous);
    if (run.lcn !== undefined) previous = run.lcn;
    out.push((delta.length << 4) | length.length, ...length, ...delta);
  }
  return Uint8Array.from([...out, 0]);
}

/** Writes the update sequence array: stride ends saved into it and replaced by the sequence number. */
function protect(bytes: Uint8Array, usn = 1, usaOffset = view(bytes).getUint16(4, true)): void {
  const v = view(bytes);
  v.setUint16(usaOffset, usn, true);
  for (let i = 1; i * SECTOR <= bytes.length; i++) {
    v.setUint16(usaOffset + 2 * i, v.getUint16(i * SECTOR - 2, true), true);
    v.setUint16(i * SECTOR - 2, usn, true);
  }
}

/** Undoes protect(). */
function unprotect(bytes: Uint8Array): void {
  const v = view(bytes);
  const usaOffset = v.getUint16(4, true);
  for (let i = 1; i * SECTOR <= bytes.length && usaOffset + 2 * i + 2 <= bytes.length; i++) {
    v.setUint16(i * SECTOR - 2, v.getUint16(usaOffset + 2 * i, true), true);
  }
}

function resident(type: number, name: string, value: Uint8Array): Uint8Array {
  const nameBytes = utf16(name);
  const valueOffset = align8(0x18 + nameBytes.length);
  const attr = new Uint8Array(align8(valueOffset + value.length));
  const v = view(attr);
  v.setUint32(0, type, true);
  v.setUint32(4, attr.length, true);
  attr[9] = name.length;
  v.setUint16(0x0a, 0x18, true);
  attr.set(nameBytes, 0x18);
  v.setUint32(0x10, value.length, true);
  v.setUint16(0x14, valueOffset, true);
  attr.set(value, valueOffset);
  return attr;
}

interface Extent {
  readonly runs: readonly { lcn?: number; clusters: number }[];
  readonly lowestVcn?: number;
  readonly dataBytes: number;
  readonly allocatedBytes: number;
  readonly flags?: number;
}

function nonResident(type: number, name: string, e: Extent): Uint8Array {
  const nameBytes = utf16(name);
  const runsOffset = align8(0x40 + nameBytes.length);
  const runs = encodeRuns(e.runs);
  const attr = new Uint8Array(align8(runsOffset + runs.length));
  const v = view(attr);
  const lowest = e.lowestVcn ?? 0;
  v.setUint32(0, type, true);
  v.setUint32(4, attr.length, true);
  attr[8] = 1;
  attr[9] = name.length;
  v.setUint16(0x0a, 0x40, true);
  v.setUint16(0x0c, e.flags ?? 0, true);
  attr.set(nameBytes, 0x40);
  v.setBigInt64(0x10, BigInt(lowest), true);
  v.setBigInt64(0x18, BigInt(lowest + e.runs.reduce((n, r) => n + r.clusters, 0) - 1), true);
  v.setUint16(0x20, runsOffset, true);
  v.setBigInt64(0x28, BigInt(e.allocatedBytes), true);
  v.setBigInt64(0x30, BigInt(e.dataBytes), true);
  v.setBigInt64(0x38, BigInt(e.dataBytes), true);
  attr.set(runs, runsOffset);
  return attr;
}

/** A protected 1 KiB FILE record (NTFS 3.1 header: update sequence array at 0x30, attributes at 0x38). */
function fileRecord(number: number, attrs: readonly Uint8Array[], options: { flags?: number; base?: number } = {}): Uint8Array {
  const rec = new Uint8Array(RECORD);
  const v = view(rec);
  putAscii(rec, 0, 'FILE');
  v.setUint16(4, 0x30, true);
  v.setUint16(6, RECORD / SECTOR + 1, true);
  v.setUint16(0x10, seqOf(number), true);
  v.setUint16(0x14, 0x38, true);
  v.setUint16(0x16, options.flags ?? 1, true);
  v.setUint32(0x1c, RECORD, true);
  if (options.base !== undefined) v.setBigUint64(0x20, ref(options.base), true);
  v.setUint32(0x2c, number, true);
  let at = 0x38;
  for (const attr of attrs) {
    rec.set(attr, at);
    at += attr.length;
  }
  v.setUint32(at, 0xffffffff, true);
  v.setUint32(0x18, at + 8, true);
  protect(rec);
  return rec;
}

function seqOf(record: number): number {
  return record === 0 ? 1 : record;
}

function ref(record: number): bigint {
  return (BigInt(seqOf(record)) << 48n) | BigInt(record);
}

/** An index entry for a file in the root directory (key: FILE_NAME_ATTR). */
function indexEntry(record: number, name: string): Uint8Array {
  const key = new Uint8Array(0x42 + 2 * name.length);
  view(key).setBigUint64(0, ref(5), true);
  key[0x40] = name.length;
  key[0x41] = 3;
  key.set(utf16(name), 0x42);
  const entry = new Uint8Array(align8(0x10 + key.length));
  view(entry).setBigUint64(0, ref(record), true);
  view(entry).setUint16(8, entry.length, true);
  view(entry).setUint16(0x0a, key.length, true);
  entry.set(key, 0x10);
  return entry;
}

/** The last entry of an index node, pointing to a child block when `child` is given. */
function endEntry(child?: number): Uint8Array {
  const entry = new Uint8Array(child === undefined ? 0x10 : 0x18);
  view(entry).setUint16(8, entry.length, true);
  view(entry).setUint16(0x0c, child === undefined ? 2 : 3, true);
  if (child !== undefined) view(entry).setBigInt64(0x10, BigInt(child), true);
  return entry;
}

/** An INDEX_HEADER followed by its entries. */
function indexNode(entries: readonly Uint8Array[], flags: number): Uint8Array {
  const length = 0x10 + entries.reduce((n, e) => n + e.length, 0);
  const node = new Uint8Array(length);
  view(node).setUint32(0, 0x10, true);
  view(node).setUint32(4, length, true);
  view(node).setUint32(8, length, true);
  node[0x0c] = flags;
  let at = 0x10;
  for (const e of entries) {
    node.set(e, at);
    at += e.length;
  }
  return node;
}

function indexRoot(entries: readonly Uint8Array[], large: boolean): Uint8Array {
  const node = indexNode(entries, large ? 1 : 0);
  const value = new Uint8Array(0x10 + node.length);
  view(value).setUint32(0, 0x30, true);
  view(value).setUint32(4, 1, true);
  view(value).setUint32(8, 4096, true);
  value[0x0c] = 1;
  value.set(node, 0x10);
  return value;
}

function indexBlock(vcn: number, entries: readonly Uint8Array[]): Uint8Array {
  const block = new Uint8Array(4096);
  putAscii(block, 0, 'INDX');
  view(block).setUint16(4, 0x28, true);
  view(block).setUint16(6, 4096 / SECTOR + 1, true);
  view(block).setBigInt64(0x10, BigInt(vcn), true);
  const node = indexNode(entries, 0);
  view(node).setUint32(0, 0x28, true);
  view(node).setUint32(4, 0x28 + node.length - 0x10, true);
  view(node).setUint32(8, 4096 - 0x18, true);
  block.set(node.subarray(0, 0x10), 0x18);
  block.set(node.subarray(0x10), 0x40);
  protect(block);
  return block;
}

/** A $LogFile restart page (logfile.h RESTART_PAGE_HEADER, RESTART_AREA). */
interface RestartPage {
  readonly lsn: number;
  readonly inUse: boolean;
  readonly cleanFlag: boolean;
  readonly version?: readonly [number, number];
}

function restartPage(page: RestartPage): Uint8Array {
  const bytes = new Uint8Array(4096);
  const v = view(bytes);
  putAscii(bytes, 0, 'RSTR');
  v.setUint16(4, 0x1e, true);
  v.setUint16(6, 4096 / SECTOR + 1, true);
  v.setUint32(0x10, 4096, true);
  v.setUint32(0x14, 4096, true);
  v.setUint16(0x18, 0x30, true);
  v.setInt16(0x1a, page.version?.[1] ?? 1, true);
  v.setInt16(0x1c, page.version?.[0] ?? 1, true);
  v.setBigInt64(0x30, BigInt(page.lsn), true);
  v.setUint16(0x30 + 0x08, 1, true);
  v.setUint16(0x30 + 0x0a, 0xffff, true);
  v.setUint16(0x30 + 0x0c, page.inUse ? 0 : 0xffff, true);
  v.setUint16(0x30 + 0x0e, page.cleanFlag ? 2 : 0, true);
  v.setUint16(0x30 + 0x14, 0x40, true);
  protect(bytes);
  return bytes;
}

// ---------------------------------------------------------------- the volume builder

interface VolumeOptions {
  readonly clusterBytes?: 512 | 4096;
  readonly clusterCount?: number;
  readonly volumeFlags?: number;
  readonly version?: readonly [number, number];
  readonly log?: 'empty' | readonly RestartPage[] | 'garbage';
  /** hiberfil.sys's first bytes and size; in an INDX block under the root when `deep`. */
  readonly hiberfil?: { readonly head: string; readonly bytes?: number; readonly deep?: boolean };
  /** $Bitmap in two runs, the second before the first (a negative LCN delta). */
  readonly bitmapSplit?: boolean;
  /** $Bitmap's two extents in extension records 17 and 18, named by an $ATTRIBUTE_LIST. */
  readonly bitmapList?: boolean;
  /** $MFT in two extents, the second in extension record 19 through an $ATTRIBUTE_LIST. */
  readonly mftList?: boolean;
  readonly bitmapFlags?: number;
  /** Bytes fewer than one bit per cluster in $Bitmap. */
  readonly bitmapShortBytes?: number;
  /** Clears the $Bitmap bit of the first $MFT cluster. */
  readonly freeMftCluster?: boolean;
  readonly seed?: number;
}

interface Built {
  readonly image: Uint8Array;
  readonly clusterBytes: number;
  readonly clusterCount: number;
  /** Free bytes computed bit by bit from the bitmap the builder wrote. */
  readonly expectedFree: ExtentSet;
  recordOffset(n: number): number;
}

/** Sectors past the last whole cluster (none with one-sector clusters), then the backup boot sector. */
function extraSectors(clusterBytes: number): number {
  return clusterBytes === SECTOR ? 0 : 3;
}

function bootSector(image: Uint8Array, clusterBytes: number, clusterCount: number): void {
  const v = view(image);
  image.set([0xeb, 0x52, 0x90], 0);
  putAscii(image, 3, 'NTFS    ');
  v.setUint16(0x0b, SECTOR, true);
  image[0x0d] = clusterBytes / SECTOR;
  image[0x15] = 0xf8;
  v.setBigUint64(0x28, BigInt((clusterCount * clusterBytes) / SECTOR + extraSectors(clusterBytes)), true);
  v.setBigUint64(0x30, BigInt(AT.mft / clusterBytes), true);
  v.setBigUint64(0x38, BigInt(AT.mirror / clusterBytes), true);
  v.setInt8(0x40, -10);
  image[0x44] = 1;
  v.setBigUint64(0x48, 0x1a2b3c4d5e6f7080n, true);
  v.setUint16(0x1fe, 0xaa55, true);
}

function buildVolume(o: VolumeOptions = {}): Built {
  const cb = o.clusterBytes ?? 4096;
  const clusterCount = o.clusterCount ?? (cb === 4096 ? 256 : 2048);
  const image = new Uint8Array(clusterCount * cb + (extraSectors(cb) + 1) * SECTOR);
  const lcn = (bytes: number): number => bytes / cb;
  const used: Range[] = [];
  const use = (start: number, bytes: number): void => void used.push({ start: lcn(start), end: lcn(start) + Math.ceil(bytes / cb) });
  bootSector(image, cb, clusterCount);
  use(0, 8 * KiB);
  use(AT.mirror, 4 * KiB);

  const records = new Map<number, Uint8Array>();
  const put = (n: number, attrs: Uint8Array[], options?: { flags?: number; base?: number }): void =>
    void records.set(n, fileRecord(n, attrs, options));

  // $MFT: 32 records, contiguous or in two extents joined by an attribute list; the first
  // extent maps the extension record 19, as NTFS requires to bootstrap.
  const head = MFT_HEAD_RECORDS * RECORD;
  const tail = (MFT_RECORDS - MFT_HEAD_RECORDS) * RECORD;
  const mftSizes = { dataBytes: MFT_RECORDS * RECORD, allocatedBytes: MFT_RECORDS * RECORD };
  if (o.mftList) {
    const headRuns = [{ lcn: lcn(AT.mft), clusters: lcn(head) }];
    const tailRuns = [{ lcn: lcn(AT.mftTail), clusters: lcn(tail) }];
    put(0, [attributeList([[0x80, 0, 0], [0x80, lcn(head), 19]]), nonResident(0x80, '', { runs: headRuns, ...mftSizes })]);
    put(19, [nonResident(0x80, '', { runs: tailRuns, lowestVcn: lcn(head), dataBytes: 0, allocatedBytes: 0 })], { base: 0 });
    use(AT.mft, head);
    use(AT.mftTail, tail);
  } else {
    put(0, [nonResident(0x80, '', { runs: [{ lcn: lcn(AT.mft), clusters: lcn(head + tail) }], ...mftSizes })]);
    use(AT.mft, head + tail);
  }

  put(2, [nonResident(0x80, '', { runs: [{ lcn: lcn(AT.log), clusters: lcn(LOG_BYTES) }], dataBytes: LOG_BYTES, allocatedBytes: LOG_BYTES })]);
  use(AT.log, LOG_BYTES);
  writeLog(image, o.log ?? 'empty');

  const info = new Uint8Array(12);
  info[8] = o.version?.[0] ?? 3;
  info[9] = o.version?.[1] ?? 1;
  view(info).setUint16(10, o.volumeFlags ?? 0, true);
  put(3, [resident(0x70, '', info)]);

  buildRoot(image, o, put, use, cb);
  if (o.hiberfil) buildHiberfil(image, o.hiberfil, put, use, cb);

  const bitmapBytes = align8(Math.ceil(clusterCount / 8)) - (o.bitmapShortBytes ?? 0);
  const bitmapClusters = Math.max(2, Math.ceil(bitmapBytes / cb));
  const first = Math.ceil(bitmapClusters / 2);
  const split = o.bitmapSplit || o.bitmapList;
  const pieces = split
    ? [{ lcn: lcn(AT.bitmap), clusters: first }, { lcn: lcn(AT.bitmapTail), clusters: bitmapClusters - first }]
    : [{ lcn: lcn(AT.bitmap), clusters: bitmapClusters }];
  const sizes = { dataBytes: bitmapBytes, allocatedBytes: bitmapClusters * cb, flags: o.bitmapFlags ?? 0 };
  if (o.bitmapList) {
    put(6, [attributeList([[0x80, 0, 17], [0x80, first, 18]])]);
    put(17, [nonResident(0x80, '', { runs: [pieces[0]!], ...sizes })], { base: 6 });
    put(18, [nonResident(0x80, '', { runs: [pieces[1]!], lowestVcn: first, dataBytes: 0, allocatedBytes: 0 })], { base: 6 });
  } else {
    put(6, [nonResident(0x80, '', { runs: pieces, ...sizes })]);
  }
  for (const p of pieces) use(p.lcn * cb, p.clusters * cb);

  for (let n = 0; n < MFT_RECORDS; n++) {
    const rec = records.get(n) ?? fileRecord(n, [], { flags: 0 });
    image.set(rec, mftOffset(n, o));
  }
  const bitmap = writeBitmap(image, o, used, clusterCount, cb, pieces, bitmapBytes);
  const expected = freeClusterRunsNaive(bitmap, clusterCount).map((r) => ({ start: r.start * cb, end: r.end * cb }));
  return {
    image,
    clusterBytes: cb,
    clusterCount,
    expectedFree: ExtentSet.from(expected),
    recordOffset: (n) => mftOffset(n, o),
  };
}

function mftOffset(n: number, o: VolumeOptions): number {
  return o.mftList && n >= MFT_HEAD_RECORDS ? AT.mftTail + (n - MFT_HEAD_RECORDS) * RECORD : AT.mft + n * RECORD;
}

/** A resident $ATTRIBUTE_LIST: [type, lowest VCN, record] per entry. */
function attributeList(entries: readonly (readonly [number, number, number])[]): Uint8Array {
  const value = new Uint8Array(entries.length * 0x20);
  entries.forEach(([type, vcn, record], i) => {
    const v = view(value);
    v.setUint32(i * 0x20, type, true);
    v.setUint16(i * 0x20 + 4, 0x20, true);
    value[i * 0x20 + 7] = 0x1a;
    v.setBigInt64(i * 0x20 + 8, BigInt(vcn), true);
    v.setBigUint64(i * 0x20 + 0x10, ref(record), true);
  });
  return resident(0x20, '', value);
}

type Put = (n: number, attrs: Uint8Array[], options?: { flags?: number; base?: number }) => void;
type Use = (start: number, bytes: number) => void;

function buildRoot(image: Uint8Array, o: VolumeOptions, put: Put, use: Use, cb: number): void {
  const files = [indexEntry(10, '$UpCase'), ...(o.hiberfil ? [indexEntry(HIBERFIL_RECORD, 'hiberfil.sys')] : [])];
  if (!o.hiberfil?.deep) {
    put(5, [resident(0x90, '$I30', indexRoot([...files, endEntry()], false))], { flags: 3 });
    return;
  }
  image.set(indexBlock(0, [...files, endEntry()]), AT.indexBlock);
  use(AT.indexBlock, 4096);
  const allocation = nonResident(0xa0, '$I30', { runs: [{ lcn: AT.indexBlock / cb, clusters: 4096 / cb }], dataBytes: 4096, allocatedBytes: 4096 });
  put(5, [resident(0x90, '$I30', indexRoot([endEntry(0)], true)), allocation], { flags: 3 });
}

function buildHiberfil(image: Uint8Array, h: NonNullable<VolumeOptions['hiberfil']>, put: Put, use: Use, cb: number): void {
  const bytes = h.bytes ?? 8 * KiB;
  putAscii(image, AT.hiberfil, h.head);
  const clusters = Math.ceil(bytes / cb);
  put(HIBERFIL_RECORD, [nonResident(0x80, '', { runs: [{ lcn: AT.hiberfil / cb, clusters }], dataBytes: bytes, allocatedBytes: clusters * cb })]);
  use(AT.hiberfil, bytes);
}

function writeLog(image: Uint8Array, log: NonNullable<VolumeOptions['log']>): void {
  image.fill(0xff, AT.log, AT.log + LOG_BYTES);
  if (log === 'garbage') image.fill(0x41, AT.log, AT.log + LOG_BYTES);
  if (log === 'empty' || log === 'garbage') return;
  log.forEach((page, i) => image.set(restartPage(page), AT.log + i * 4096));
}

/** Sets the bits of the metadata, then a seeded pattern of used and free runs in the user area. */
function writeBitmap(
  image: Uint8Array,
  o: VolumeOptions,
  used: readonly Range[],
  clusterCount: number,
  cb: number,
  pieces: readonly { lcn: number; clusters: number }[],
  bitmapBytes: number,
): Uint8Array {
  const bitmap = new Uint8Array(bitmapBytes);
  const set = (c: number): void => {
    if (c < bitmap.length * 8) bitmap[c >> 3]! |= 1 << (c & 7);
  };
  for (const r of used) for (let c = r.start; c < r.end; c++) set(c);
  const random = prng(o.seed ?? 7);
  for (let c = AT.userArea / cb; c < clusterCount; ) {
    const runLength = 1 + Math.floor(random() * 40);
    if (random() < 0.5) for (let i = 0; i < runLength; i++) set(c + i);
    c += runLength;
  }
  for (let c = clusterCount; c < bitmap.length * 8; c++) set(c);
  if (o.freeMftCluster) bitmap[(AT.mft / cb) >> 3]! &= ~(1 << ((AT.mft / cb) & 7));
  let at = 0;
  for (const p of pieces) {
    const take = Math.min(p.clusters * cb, bitmap.length - at);
    if (take > 0) image.set(bitmap.subarray(at, at + take), p.lcn * cb);
    at += Math.max(take, 0);
  }
  return bitmap;
}

/** The reference: free runs found one bit at a time. */
function freeClusterRunsNaive(bitmap: Uint8Array, clusterCount: number): Range[] {
  const runs: Range[] = [];
  let start = -1;
  for (let c = 0; c <= clusterCount; c++) {
    const free = c < clusterCount && ((bitmap[c >> 3]! >> (c & 7)) & 1) === 0;
    if (free && start < 0) start = c;
    if (!free && start >= 0) {
      runs.push({ start, end: c });
      start = -1;
    }
  }
  return runs;
}

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
    expect(state(log(page))).toEqual({ clean: false, reason: expect.stringMatching(/changes to replay/) });
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
    }
    expect(outcomes.trusted).toBeGreaterThan(100);
    expect(outcomes.untrusted).toBeGreaterThan(20);
    expect(outcomes.badImage).toBeGreaterThan(100);
  });
});
