/**
 * Synthetic NTFS volumes for the unit tests, built byte by byte from the on-disk layouts
 * (Linux-NTFS "NTFS Documentation"; ntfs-3g layout.h and logfile.h): boot sector, MFT records
 * with update sequence arrays, resident and non-resident attributes, attribute lists, a root
 * directory index with an INDX block, $LogFile restart pages, and a $Bitmap.
 */
import { ExtentSet, type Range } from '../../../../src/disk/extent-set.js';
import { prng } from '../../../helpers/copy-fakes.js';
import { putAscii, view } from '../../layout/fixtures.js';

export const SECTOR = 512;
export const RECORD = 1024;
export const KiB = 1024;
/** Where the builder puts each structure, in volume bytes (multiples of every cluster size used). */
export const AT = {
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
export const LOG_BYTES = 16 * KiB;
const MFT_RECORDS = 32;
/** Records in the first $MFT extent when it has two. */
const MFT_HEAD_RECORDS = 24;
export const HIBERFIL_RECORD = 20;

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
export function encodeRuns(runs: readonly { lcn?: number; clusters: number }[]): Uint8Array {
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
export function protect(bytes: Uint8Array, usn = 1, usaOffset = view(bytes).getUint16(4, true)): void {
  const v = view(bytes);
  v.setUint16(usaOffset, usn, true);
  for (let i = 1; i * SECTOR <= bytes.length; i++) {
    v.setUint16(usaOffset + 2 * i, v.getUint16(i * SECTOR - 2, true), true);
    v.setUint16(i * SECTOR - 2, usn, true);
  }
}

/** Undoes protect(). */
export function unprotect(bytes: Uint8Array): void {
  const v = view(bytes);
  const usaOffset = v.getUint16(4, true);
  for (let i = 1; i * SECTOR <= bytes.length && usaOffset + 2 * i + 2 <= bytes.length; i++) {
    v.setUint16(i * SECTOR - 2, v.getUint16(usaOffset + 2 * i, true), true);
  }
}

export function resident(type: number, name: string, value: Uint8Array): Uint8Array {
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

export function nonResident(type: number, name: string, e: Extent): Uint8Array {
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
export function fileRecord(number: number, attrs: readonly Uint8Array[], options: { flags?: number; base?: number } = {}): Uint8Array {
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

export function restartPage(page: RestartPage): Uint8Array {
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

export interface VolumeOptions {
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

export interface Built {
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

export function buildVolume(o: VolumeOptions = {}): Built {
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
