/**
 * Synthetic XFS volumes for the unit tests, built in code (no binary blobs): superblock, per-AG
 * AGF, AGFL and a by-block B+tree of any shape over the free extents asked for, and an internal
 * log ending in an unmount record. Checksums use an independent bitwise CRC32c.
 */
import { memoryReader } from '../../../helpers/mem-reader.js';

export const UUID = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i);
const BB = 512;

/** Bitwise CRC-32C (Castagnoli), independent of the table-driven one under test. */
export function crc32cBitwise(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** Stores the XFS CRC of `bytes` (field at `crcOffset` as zero) little-endian. */
export function putCrc(bytes: Uint8Array, crcOffset: number): void {
  const v = dv(bytes);
  v.setUint32(crcOffset, 0, true);
  v.setUint32(crcOffset, crc32cBitwise(bytes), true);
}

function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export type Extent = readonly [start: number, count: number];

export interface LogSpec {
  readonly agno: number;
  readonly agbno: number;
  readonly blocks: number;
  /** Where the head is (basic blocks, 1..size); the unmount record's data block ends there. */
  readonly headBB: number;
  /** Cycle of the blocks before the head (those after it carry cycle - 1). */
  readonly cycle: number;
}

export interface XfsSpec {
  readonly version: 4 | 5;
  readonly blockSize: number;
  readonly sectorSize: number;
  readonly agCount: number;
  readonly agBlocks: number;
  /** Length of the last AG (defaults to agBlocks). */
  readonly lastAgBlocks?: number;
  /** Free extents per AG, sorted, [start, count]. */
  readonly free: readonly (readonly Extent[])[];
  /** Records per leaf and pointers per node of the synthetic bnobt (shapes the tree). */
  readonly leafRecs: number;
  readonly nodeRecs: number;
  /** AGFL blocks per AG. */
  readonly agflCount: number;
  readonly log: LogSpec;
  readonly lazyCount?: boolean;
}

/** Where the builder put things, for tests that damage them. */
export interface XfsLayout {
  readonly bytes: Uint8Array;
  readonly spec: XfsSpec;
  /** Per AG: the tree's blocks level by level, leaves first; root last. */
  readonly treeBlocks: number[][][];
  readonly agflBlocks: number[][];
  /** Byte offset of a block. */
  offsetOf(agno: number, agbno: number): number;
  /** Byte offset of the log's basic block `bb`. */
  logOffset(bb: number): number;
}

export const DEFAULT_SPEC: XfsSpec = {
  version: 5,
  blockSize: 1024,
  sectorSize: 512,
  agCount: 3,
  agBlocks: 256,
  lastAgBlocks: 200,
  free: [
    [[60, 4], [70, 1], [80, 20], [120, 136]],
    [[40, 2], [50, 3], [90, 100]],
    [[30, 1], [32, 1], [34, 1], [36, 1], [38, 1], [40, 1], [42, 1], [44, 1], [100, 100]],
  ],
  leafRecs: 2,
  nodeRecs: 8,
  agflCount: 3,
  log: { agno: 1, agbno: 20, blocks: 16, headBB: 10, cycle: 3 },
};

const FIRST_DATA = (s: XfsSpec): number => Math.floor((4 * s.sectorSize - 1) / s.blockSize) + 1;
const agLength = (s: XfsSpec, agno: number): number => (agno === s.agCount - 1 ? (s.lastAgBlocks ?? s.agBlocks) : s.agBlocks);
const agflSlots = (s: XfsSpec): number => (s.sectorSize - (s.version === 5 ? 36 : 0)) / 4;

/** Builds a whole volume from `spec`. */
export function buildXfs(spec: XfsSpec = DEFAULT_SPEC): XfsLayout {
  const dblocks = (spec.agCount - 1) * spec.agBlocks + agLength(spec, spec.agCount - 1);
  const bytes = new Uint8Array(dblocks * spec.blockSize);
  const offsetOf = (agno: number, agbno: number): number => (agno * spec.agBlocks + agbno) * spec.blockSize;
  const logOffset = (bb: number): number => offsetOf(spec.log.agno, spec.log.agbno) + bb * BB;
  const layout: XfsLayout = { bytes, spec, treeBlocks: [], agflBlocks: [], offsetOf, logOffset };
  let fdblocks = 0;
  for (let agno = 0; agno < spec.agCount; agno++) {
    const free = spec.free[agno] ?? [];
    let next = FIRST_DATA(spec);
    const alloc = (): number => next++;
    const levels = putTree(layout, agno, free, alloc);
    const agfl = Array.from({ length: spec.agflCount }, alloc);
    layout.treeBlocks.push(levels);
    layout.agflBlocks.push(agfl);
    putAgfl(layout, agno, agfl);
    putAgf(layout, agno, free, levels);
    fdblocks += free.reduce((n, [, c]) => n + c, 0) + agfl.length;
  }
  putSuperblock(layout, dblocks, fdblocks);
  putCleanLog(layout);
  return layout;
}

function sbLog(n: number): number {
  return Math.ceil(Math.log2(n));
}

function putSuperblock(l: XfsLayout, dblocks: number, fdblocks: number): void {
  const s = l.spec;
  const sb = l.bytes.subarray(0, s.sectorSize);
  const v = dv(sb);
  v.setUint32(0, 0x58465342);
  v.setUint32(4, s.blockSize);
  v.setBigUint64(8, BigInt(dblocks));
  sb.set(UUID, 32);
  const logFsb = s.log.agno * 2 ** sbLog(s.agBlocks) + s.log.agbno;
  v.setBigUint64(48, BigInt(logFsb));
  v.setUint32(84, s.agBlocks);
  v.setUint32(88, s.agCount);
  v.setUint32(96, s.log.blocks);
  v.setUint16(100, s.version === 5 ? 0xb4a5 : 0xb4a4);
  v.setUint16(102, s.sectorSize);
  sb[120] = Math.log2(s.blockSize);
  sb[121] = Math.log2(s.sectorSize);
  sb[124] = sbLog(s.agBlocks);
  v.setBigUint64(144, BigInt(fdblocks));
  const lazy = s.version === 5 || (s.lazyCount ?? true);
  v.setUint32(200, (lazy ? 0x2 : 0) | 0x88 | (s.version === 5 ? 0x100 : 0));
  v.setUint32(204, v.getUint32(200));
  if (s.version === 5) {
    v.setUint32(212, 0xd);
    v.setUint32(216, 0xb);
    putCrc(sb, 224);
  }
}

/** Writes the tree bottom-up; returns its levels (leaves first). */
function putTree(l: XfsLayout, agno: number, free: readonly Extent[], alloc: () => number): number[][] {
  const s = l.spec;
  const chunks = <T>(items: readonly T[], n: number): T[][] =>
    items.length === 0 ? [[]] : Array.from({ length: Math.ceil(items.length / n) }, (_, i) => items.slice(i * n, i * n + n));
  const leaves = chunks(free, s.leafRecs);
  let level: { agbno: number; firstKey: number }[] = leaves.map((recs) => ({ agbno: alloc(), firstKey: recs[0]?.[0] ?? 0 }));
  leaves.forEach((recs, i) => putTreeBlock(l, agno, level, i, 0, recs.map(([a, b]) => [a, b])));
  const levels = [level.map((b) => b.agbno)];
  for (let depth = 1; level.length > 1; depth++) {
    const groups = chunks(level, s.nodeRecs);
    const parents = groups.map((g) => ({ agbno: alloc(), firstKey: g[0]!.firstKey }));
    groups.forEach((g, i) => putTreeBlock(l, agno, parents, i, depth, g.map((c) => [c.firstKey, c.agbno])));
    level = parents;
    levels.push(level.map((b) => b.agbno));
  }
  return levels;
}

function putTreeBlock(l: XfsLayout, agno: number, level: { agbno: number }[], i: number, depth: number, entries: number[][]): void {
  const s = l.spec;
  const agbno = level[i]!.agbno;
  const block = l.bytes.subarray(l.offsetOf(agno, agbno), l.offsetOf(agno, agbno) + s.blockSize);
  const v = dv(block);
  const hdr = s.version === 5 ? 56 : 16;
  v.setUint32(0, s.version === 5 ? 0x41423342 : 0x41425442);
  v.setUint16(4, depth);
  v.setUint16(6, entries.length);
  v.setUint32(8, i === 0 ? 0xffffffff : level[i - 1]!.agbno);
  v.setUint32(12, i === level.length - 1 ? 0xffffffff : level[i + 1]!.agbno);
  const nodeMax = Math.floor((s.blockSize - hdr) / 12);
  entries.forEach(([a, b], k) => {
    if (depth === 0) {
      v.setUint32(hdr + k * 8, a!);
      v.setUint32(hdr + k * 8 + 4, b!);
    } else {
      v.setUint32(hdr + k * 8, a!);
      v.setUint32(hdr + nodeMax * 8 + k * 4, b!);
    }
  });
  if (s.version === 5) {
    v.setBigUint64(16, BigInt(l.offsetOf(agno, agbno) / BB));
    block.set(UUID, 32);
    v.setUint32(48, agno);
    putCrc(block, 52);
  }
}

function putAgf(l: XfsLayout, agno: number, free: readonly Extent[], levels: number[][]): void {
  const s = l.spec;
  const at = l.offsetOf(agno, 0) + s.sectorSize;
  const agf = l.bytes.subarray(at, at + s.sectorSize);
  const v = dv(agf);
  v.setUint32(0, 0x58414746);
  v.setUint32(4, 1);
  v.setUint32(8, agno);
  v.setUint32(12, agLength(s, agno));
  v.setUint32(16, levels[levels.length - 1]![0]!);
  v.setUint32(28, levels.length);
  v.setUint32(40, 0);
  v.setUint32(44, s.agflCount === 0 ? agflSlots(s) - 1 : s.agflCount - 1);
  v.setUint32(48, s.agflCount);
  v.setUint32(52, free.reduce((n, [, c]) => n + c, 0));
  v.setUint32(56, free.reduce((n, [, c]) => Math.max(n, c), 0));
  if (s.version === 5) {
    agf.set(UUID, 64);
    putCrc(agf, 216);
  }
}

function putAgfl(l: XfsLayout, agno: number, blocks: readonly number[]): void {
  const s = l.spec;
  const at = l.offsetOf(agno, 0) + 3 * s.sectorSize;
  const agfl = l.bytes.subarray(at, at + s.sectorSize);
  const v = dv(agfl);
  const base = s.version === 5 ? 36 : 0;
  for (let i = 0; i < agflSlots(s); i++) v.setUint32(base + i * 4, 0xffffffff);
  blocks.forEach((b, i) => v.setUint32(base + i * 4, b));
  if (s.version === 5) {
    v.setUint32(0, 0x5841464c);
    v.setUint32(4, agno);
    agfl.set(UUID, 8);
    putCrc(agfl, 32);
  }
}

/** Log blocks between the records putCleanLog writes before the unmount record (0: none). */
const TRANSACTION_SPAN_BB = 64;

/**
 * A ring as the kernel leaves it after a clean unmount: blocks before the head carry `cycle`,
 * those after it `cycle - 1`; transaction records fill the ring before an unmount record that
 * ends at the head.
 */
export function putCleanLog(l: XfsLayout, log: LogSpec = l.spec.log): void {
  const sizeBB = (log.blocks * l.spec.blockSize) / BB;
  const cycleOf = (bb: number): number => (bb < log.headBB ? log.cycle : log.cycle - 1);
  for (let bb = 0; bb < sizeBB; bb++) stamp(l, bb, cycleOf(bb));
  for (let bb = 0; bb + TRANSACTION_SPAN_BB <= log.headBB - 2; bb += TRANSACTION_SPAN_BB) {
    putLogRecord(l, bb, sizeBB, cycleOf, { spanBB: TRANSACTION_SPAN_BB, ops: 3, flags: 0x02 });
  }
  putLogRecord(l, (log.headBB - 2 + sizeBB) % sizeBB, sizeBB, cycleOf);
}

/**
 * The log as xfs_repair and xfs_admin leave it (libxfs_log_clear with max records): an unmount
 * record at block 0 with `cycle`, the rest of its 256 KiB write zero, then 256 KiB unmount records
 * of `cycle - 1` to the end of the ring, with CRC 0.
 */
export function putClearedLog(l: XfsLayout, cycle: number): void {
  const sizeBB = (l.spec.log.blocks * l.spec.blockSize) / BB;
  const writeBB = 512;
  for (let bb = 0; bb < sizeBB; bb++) stamp(l, bb, bb < writeBB ? 0 : cycle - 1);
  putLogRecord(l, 0, sizeBB, () => cycle, { crc: false });
  for (let bb = writeBB; bb < sizeBB; bb += writeBB) {
    putLogRecord(l, bb, sizeBB, () => cycle - 1, { spanBB: writeBB, headerBB: 8, sizeBytes: writeBB * BB, crc: false });
  }
}

/** Writes a data block holding only its cycle stamp (an all-zero block for cycle 0). */
export function stamp(l: XfsLayout, bb: number, cycle: number): void {
  const at = l.logOffset(bb);
  l.bytes.fill(0, at, at + BB);
  dv(l.bytes).setUint32(at, cycle);
}

export interface RecordOptions {
  /** Blocks the record covers, headers included (default 2: an unmount record). */
  readonly spanBB?: number;
  readonly headerBB?: number;
  /** h_size (default 32 KiB). */
  readonly sizeBytes?: number;
  readonly ops?: number;
  /** The first operation's flags (default XLOG_UNMOUNT_TRANS). */
  readonly flags?: number;
  /** Whether a v5 record gets its CRC (default true; mkfs and xfs_repair write 0). */
  readonly crc?: boolean;
}

/**
 * A log record with its header at `bb`, as mkfs and the kernel write it; each block carries the
 * cycle `cycleOf` gives its position (a record that wraps past the end of the ring has its tail
 * one cycle ahead, as xlog_split_iclog stamps it).
 */
export function putLogRecord(l: XfsLayout, bb: number, sizeBB: number, cycleOf: (bb: number) => number, o: RecordOptions = {}): void {
  const spanBB = o.spanBB ?? 2;
  const headerBB = o.headerBB ?? 1;
  const cycle = cycleOf(bb);
  const record = new Uint8Array(spanBB * BB);
  const h = dv(record);
  h.setUint32(0, 0xfeedbabe);
  h.setUint32(4, cycle);
  h.setUint32(8, 2);
  h.setUint32(12, (spanBB - headerBB) * BB);
  h.setUint32(16, cycle);
  h.setUint32(20, bb);
  h.setUint32(24, cycle);
  h.setUint32(28, bb);
  h.setUint32(36, 0xffffffff);
  h.setUint32(40, o.ops ?? 1);
  h.setUint32(300, 2);
  record.set(UUID, 304);
  h.setUint32(320, o.sizeBytes ?? 32768);
  for (let i = 1; i < spanBB; i++) h.setUint32(i * BB, cycleOf((bb + i) % sizeBB));
  const op = headerBB * BB;
  h.setUint32(op + 4, 8);
  record[op + 8] = 0xaa;
  record[op + 9] = o.flags ?? 0x20;
  h.setUint16(op + 12, 0x556e);
  if (l.spec.version === 5 && (o.crc ?? true)) {
    const crcInput = new Uint8Array(328 + (spanBB - headerBB) * BB);
    crcInput.set(record.subarray(0, 328), 0);
    crcInput.set(record.subarray(op), 328);
    new DataView(crcInput.buffer).setUint32(32, 0, true);
    h.setUint32(32, crc32cBitwise(crcInput), true);
  }
  for (let i = 0; i < spanBB; i++) l.bytes.set(record.subarray(i * BB, (i + 1) * BB), l.logOffset((bb + i) % sizeBB));
}

/** A BlockReader over the image that rejects any read outside it with a RangeError. */
export const imageReader = memoryReader;
