/**
 * Whether an XFS internal log was cleanly unmounted, decided as the kernel decides it at mount
 * (fs/xfs/xfs_log_recover.c; the same code is libxlog/xfs_log_recover.c in xfsprogs, whose
 * verdict `xfs_logprint -t` prints as "state: <CLEAN>"):
 *
 * 1. The log is a ring of 512-byte basic blocks, each starting with the ring's cycle number (a
 *    record header holds 0xFEEDBABE there and its cycle in h_cycle: xlog_get_cycle). The head,
 *    where the next write would go, is where the cycle drops (xlog_find_head): binary search
 *    between block 0 (cycle C) and the last block (C, C-1, or 0 in a ring not yet wrapped,
 *    xlog_find_zeroed); then the XLOG_TOTAL_REC_SHIFT blocks behind it are scanned for a hole
 *    left by an overtaken write (xlog_find_verify_cycle), and the head backs up over a record
 *    that does not end exactly there (xlog_find_verify_log_record).
 * 2. The last record header before the head must end exactly at the head, hold one operation,
 *    and that operation must carry XLOG_UNMOUNT_TRANS (xlog_check_unmount_rec). On v5 its CRC
 *    must also match unless it is 0 (mkfs and xfs_repair write 0, which the kernel accepts;
 *    xlog_verify_head would otherwise treat the record as torn and replay what precedes it).
 *
 * Anything else needs log recovery: refused. The kernel searches the whole ring for the last
 * header; this reader only the longest record's span before the head, since an unmount record
 * ending at the head lies within it. Also refused: a log that is all zeros (neither mkfs nor the
 * kernel leaves one), an external log device, cycles that do not form a ring, a head with no
 * record header behind it (the kernel fails the mount), or a record of another filesystem.
 * Format: libxfs/xfs_log_format.h, struct xlog_rec_header, xlog_rec_ext_header, xlog_op_header.
 */
import { u64be, viewOf } from '../../binary/bytes.js';
import { crc32cUpdate } from '../../binary/crc32.js';
import type { BlockReader } from '../../disk/types.js';
import { BB_BYTES, sameUuid } from './common.js';
import { agBlockOffsetBytes, agLengthBlocks, type XfsGeometry } from './superblock.js';

const XLOG_HEADER_MAGIC = 0xfeedbabe;
/** struct xlog_rec_header field offsets. */
const REC = { magic: 0, cycle: 4, version: 8, len: 12, lsn: 16, crc: 32, numLogOps: 40, fsUuid: 304, size: 320 } as const;
const XLOG_VERSION_2 = 0x2;
const XLOG_VERSION_OKBITS = 0x3;
/** Each record (or extension) header covers XLOG_HEADER_CYCLE_SIZE bytes of data. */
const XLOG_HEADER_CYCLE_SIZE = 32 * 1024;
const XLOG_MAX_RECORD_BYTES = 256 * 1024;
const XLOG_BIG_RECORD_BYTES = 32 * 1024;
const XLOG_MAX_ICLOGS = 8;
/** A record has at most one header block per 32 KiB of data: 8 for the largest. */
const MAX_HEADER_BB = XLOG_MAX_RECORD_BYTES / XLOG_HEADER_CYCLE_SIZE;
/** sizeof(struct xlog_rec_header): 328 on 64-bit builds (padded to 8), 324 on i386; both are in the wild. */
const REC_HEADER_CRC_BYTES = [328, 324];
/** sizeof(struct xlog_rec_ext_header): xh_cycle and 64 cycle words. */
const EXT_HEADER_BYTES = 260;
/** xlog_op_header: oh_flags at byte 9; XLOG_UNMOUNT_TRANS. */
const OP_FLAGS = 9;
const XLOG_UNMOUNT_TRANS = 0x20;
const UUID_BYTES = 16;
const TWO_32 = 2 ** 32;

/** The internal log as a ring of basic blocks read through the volume. */
class LogRing {
  constructor(
    private readonly reader: BlockReader,
    private readonly offsetBytes: number,
    readonly sizeBB: number,
  ) {}

  /** `count` (≤ sizeBB) blocks from ring position `startBB` (any integer), wrapping past the end. */
  async read(startBB: number, count: number): Promise<Uint8Array> {
    const start = ((startBB % this.sizeBB) + this.sizeBB) % this.sizeBB;
    const direct = Math.min(count, this.sizeBB - start);
    const first = await this.reader.read(this.offsetBytes + start * BB_BYTES, direct * BB_BYTES);
    if (direct === count) return first;
    const out = new Uint8Array(count * BB_BYTES);
    out.set(first, 0);
    out.set(await this.reader.read(this.offsetBytes, (count - direct) * BB_BYTES), first.length);
    return out;
  }

  async cycle(bb: number): Promise<number> {
    return logBlockCycle(await this.read(bb, 1));
  }
}

/** The cycle number of the basic block at byte `offset` of `bytes` (xlog_get_cycle). */
export function logBlockCycle(bytes: Uint8Array, offset = 0): number {
  const v = viewOf(bytes);
  const first = v.getUint32(offset);
  return first === XLOG_HEADER_MAGIC ? v.getUint32(offset + 4) : first;
}

/**
 * Search windows, clamped to the ring: XLOG_TOTAL_REC_SHIFT and XLOG_REC_SHIFT of xlog_find_head,
 * and the longest record with its headers (the unmount record must end at the head, so its
 * header lies no further back).
 */
interface Windows {
  readonly scanBB: number;
  readonly recordBB: number;
  readonly longestRecordBB: number;
}

/**
 * Why the log cannot be called clean: `needsRecovery` when it was not cleanly unmounted (the
 * probe's `dirty`), else its state cannot be known from the volume (external, damaged, not a log).
 */
export interface XfsLogRefusal {
  readonly reason: string;
  readonly needsRecovery: boolean;
}

const unknown = (reason: string): XfsLogRefusal => ({ reason, needsRecovery: false });
const recovery = (reason: string): XfsLogRefusal => ({ reason, needsRecovery: true });

/** Why the log cannot be called clean ("xfs log …"), or undefined when it was cleanly unmounted. */
export async function readXfsLogRefusal(reader: BlockReader, g: XfsGeometry): Promise<XfsLogRefusal | undefined> {
  if (g.logStartFsb === 0) return unknown('xfs has an external log device, whose state cannot be checked from the volume');
  const agno = Math.floor(g.logStartFsb / 2 ** g.agBlockLog);
  const agbno = g.logStartFsb % 2 ** g.agBlockLog;
  if (!(agno < g.agCount && g.logBlocks > 0 && agbno + g.logBlocks <= agLengthBlocks(g, agno))) {
    return unknown(`xfs superblock: the log (${g.logBlocks} blocks at FSB ${g.logStartFsb}) lies outside the filesystem`);
  }
  const ring = new LogRing(reader, agBlockOffsetBytes(g, agno, agbno), (g.logBlocks * g.blockSizeBytes) / BB_BYTES);
  const recordBytes = g.logV2 ? XLOG_MAX_RECORD_BYTES : XLOG_BIG_RECORD_BYTES;
  const windows: Windows = {
    scanBB: Math.min(ring.sizeBB, (XLOG_MAX_ICLOGS * recordBytes) / BB_BYTES),
    recordBB: Math.min(ring.sizeBB, recordBytes / BB_BYTES),
    longestRecordBB: Math.min(ring.sizeBB, recordBytes / BB_BYTES + MAX_HEADER_BB),
  };
  const head = await findHead(ring, g, windows);
  return typeof head === 'number' ? checkUnmountRecord(ring, g, head, windows) : head;
}

/** xlog_find_head: the head block in 0..sizeBB-1, or why there is none. */
async function findHead(ring: LogRing, g: XfsGeometry, w: Windows): Promise<number | XfsLogRefusal> {
  const n = ring.sizeBB;
  const first = await ring.cycle(0);
  if (first === 0) return unknown('xfs log is entirely zeroed, so its state is unknown');
  const last = await ring.cycle(n - 1);
  if (last === 0) return findHeadOfZeroedTail(ring, g, w, first);
  let head: number;
  let stopOnCycle: number;
  if (first === last) {
    head = n;
    stopOnCycle = last - 1;
  } else if (last === first - 1) {
    head = await cycleStart(ring, 0, n - 1, last);
    stopOnCycle = last;
  } else {
    return unknown(`xfs log: cycle ${first} at its start and ${last} at its end do not make one ring`);
  }
  head = await behindHoles(ring, head, stopOnCycle, w.scanBB);
  const verified = await backOverPartialRecord(ring, g, head, w.recordBB);
  return typeof verified === 'number' ? verified % n : verified;
}

/** xlog_find_zeroed: a ring written once up to a point and zero after it (cycle 1, then 0). */
async function findHeadOfZeroedTail(ring: LogRing, g: XfsGeometry, w: Windows, first: number): Promise<number | XfsLogRefusal> {
  if (first !== 1) return unknown(`xfs log: cycle ${first} at its start but a zeroed end: not a log`);
  let head = await cycleStart(ring, 0, ring.sizeBB - 1, 0);
  const scanBB = Math.min(head, w.scanBB);
  const hole = firstWithCycle(await ring.read(head - scanBB, scanBB), 0);
  if (hole >= 0) head = head - scanBB + hole;
  return backOverPartialRecord(ring, g, head, scanBB);
}

/** xlog_find_cycle_start: binary search for the first block with `cycle` after `firstBB`. */
async function cycleStart(ring: LogRing, firstBB: number, lastBB: number, cycle: number): Promise<number> {
  let lo = firstBB;
  let hi = lastBB;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await ring.cycle(mid)) === cycle) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** Index of the first block in `blocks` whose cycle is `cycle`, or -1. */
function firstWithCycle(blocks: Uint8Array, cycle: number): number {
  for (let i = 0; i * BB_BYTES < blocks.length; i++) if (logBlockCycle(blocks, i * BB_BYTES) === cycle) return i;
  return -1;
}

/** xlog_find_verify_cycle as xlog_find_head uses it: the head moves back to a hole of an overtaken write. */
async function behindHoles(ring: LogRing, head: number, stopOnCycle: number, scanBB: number): Promise<number> {
  if (head >= scanBB) {
    const hole = firstWithCycle(await ring.read(head - scanBB, scanBB), stopOnCycle);
    return hole >= 0 ? head - scanBB + hole : head;
  }
  const endStart = ring.sizeBB - (scanBB - head);
  const oldHole = firstWithCycle(await ring.read(endStart, scanBB - head), stopOnCycle - 1);
  if (oldHole >= 0) return endStart + oldHole;
  const hole = head > 0 ? firstWithCycle(await ring.read(0, head), stopOnCycle) : -1;
  return hole >= 0 ? hole : head;
}

/**
 * Searches back from `head` (at most `windowBB` blocks, wrapping) for a record header: its ring
 * position (negative when it wrapped) and its block.
 */
async function lastHeaderBefore(ring: LogRing, head: number, windowBB: number): Promise<{ at: number; header: Uint8Array } | undefined> {
  const blocks = await ring.read(head - windowBB, windowBB);
  const v = viewOf(blocks);
  for (let j = windowBB - 1; j >= 0; j--) {
    if (v.getUint32(j * BB_BYTES) === XLOG_HEADER_MAGIC) {
      return { at: head - windowBB + j, header: blocks.subarray(j * BB_BYTES, (j + 1) * BB_BYTES) };
    }
  }
  return undefined;
}

/** xlog_find_verify_log_record: if the last record does not end at `head`, the head is its start. */
async function backOverPartialRecord(ring: LogRing, g: XfsGeometry, head: number, windowBB: number): Promise<number | XfsLogRefusal> {
  const found = await lastHeaderBefore(ring, head, windowBB);
  if (!found) return recovery(`xfs log: no record header in the ${windowBB} blocks before the head: the log needs recovery`);
  const h = viewOf(found.header);
  const headerBB = g.logV2 ? Math.max(1, Math.ceil(h.getUint32(REC.size) / XLOG_HEADER_CYCLE_SIZE)) : 1;
  const spanBB = headerBB + Math.ceil(h.getUint32(REC.len) / BB_BYTES);
  return head - found.at === spanBB ? head : (found.at + ring.sizeBB) % ring.sizeBB;
}

/** What the report says of a log that needs recovery (also the XFS driver's word for `dirty`). */
export const XFS_LOG_DIRTY = 'xfs log is dirty (not cleanly unmounted): it needs recovery; mount the filesystem once, or run xfs_repair';
const DIRTY = recovery(XFS_LOG_DIRTY);

/** xlog_find_tail + xlog_check_unmount_rec: the record before the head must be the unmount record. */
async function checkUnmountRecord(ring: LogRing, g: XfsGeometry, head: number, w: Windows): Promise<XfsLogRefusal | undefined> {
  const found = await lastHeaderBefore(ring, head, w.longestRecordBB);
  if (!found) return DIRTY;
  const record = parseLogRecordHeader(found.header);
  const at = (found.at + ring.sizeBB) % ring.sizeBB;
  if (typeof record === 'string') return unknown(`xfs log: the record header at block ${at} is damaged (${record})`);
  if (record.lsnCycle !== record.cycle || record.lsnBlock !== at) return unknown(`xfs log: the record at block ${at} names another place`);
  // xlog_header_check_mount: a nil UUID is an old IRIX log; any other must be this filesystem's.
  if (!record.fsUuid.every((b) => b === 0) && !sameUuid(record.fsUuid, g.uuid)) {
    return unknown('xfs log belongs to another filesystem (UUID mismatch)');
  }
  const headerBB = g.logV2 && record.version & XLOG_VERSION_2 && record.sizeBytes > XLOG_HEADER_CYCLE_SIZE
    ? Math.ceil(record.sizeBytes / XLOG_HEADER_CYCLE_SIZE)
    : 1;
  const dataBB = Math.ceil(record.lenBytes / BB_BYTES);
  if (headerBB + dataBB > ring.sizeBB) return unknown(`xfs log: the record at block ${at} is longer than the log`);
  if ((at + headerBB + dataBB) % ring.sizeBB !== head || record.numLogOps !== 1) return DIRTY;
  const whole = await ring.read(at, headerBB + dataBB);
  if (!(whole[headerBB * BB_BYTES + OP_FLAGS]! & XLOG_UNMOUNT_TRANS)) return DIRTY;
  if (g.version === 5 && !recordCrcOk(whole, headerBB, record.lenBytes)) {
    return recovery('xfs log: the unmount record fails its CRC (a torn write): the log needs recovery');
  }
  return undefined;
}

/** The fields of a log record header (struct xlog_rec_header) the clean check uses. */
export interface LogRecordHeader {
  readonly cycle: number;
  readonly version: number;
  readonly lenBytes: number;
  readonly lsnCycle: number;
  readonly lsnBlock: number;
  readonly numLogOps: number;
  /** h_size: the in-core log size (version 2 records only, else 0). */
  readonly sizeBytes: number;
  readonly fsUuid: Uint8Array;
}

/** Decodes a record header block; a string says what is impossible in it (xlog_valid_rec_header). */
export function parseLogRecordHeader(block: Uint8Array): LogRecordHeader | string {
  if (block.length < BB_BYTES) return `only ${block.length} bytes`;
  const v = viewOf(block);
  if (v.getUint32(REC.magic) !== XLOG_HEADER_MAGIC) return 'bad magic';
  const version = v.getUint32(REC.version);
  if (version === 0 || version & ~XLOG_VERSION_OKBITS) return `version ${version}`;
  const lenBytes = v.getUint32(REC.len);
  const sizeBytes = version & XLOG_VERSION_2 ? v.getUint32(REC.size) : 0;
  if (lenBytes > XLOG_MAX_RECORD_BYTES || sizeBytes > XLOG_MAX_RECORD_BYTES) return `length ${lenBytes}/${sizeBytes}`;
  const lsn = u64be(v, REC.lsn);
  return {
    cycle: v.getUint32(REC.cycle),
    version,
    lenBytes,
    lsnCycle: Math.floor(lsn / TWO_32),
    lsnBlock: lsn % TWO_32,
    numLogOps: v.getUint32(REC.numLogOps),
    sizeBytes,
    fsUuid: block.subarray(REC.fsUuid, REC.fsUuid + UUID_BYTES),
  };
}

/** xlog_cksum over a whole record: the header (CRC as zero), the extension headers the data needs, the data. */
function recordCrcOk(record: Uint8Array, headerBB: number, lenBytes: number): boolean {
  const stored = viewOf(record).getUint32(REC.crc, true);
  if (stored === 0) return true;
  const extHeaders = Math.max(1, Math.ceil(lenBytes / XLOG_HEADER_CYCLE_SIZE));
  if (extHeaders > headerBB) return false;
  const dataStart = headerBB * BB_BYTES;
  return REC_HEADER_CRC_BYTES.some((headerBytes) => {
    let state = crc32cUpdate(0xffffffff, record.subarray(0, REC.crc));
    state = crc32cUpdate(state, new Uint8Array(4));
    state = crc32cUpdate(state, record.subarray(REC.crc + 4, headerBytes));
    for (let i = 1; i < extHeaders; i++) state = crc32cUpdate(state, record.subarray(i * BB_BYTES, i * BB_BYTES + EXT_HEADER_BYTES));
    state = crc32cUpdate(state, record.subarray(dataStart, dataStart + lenBytes));
    return ((state ^ 0xffffffff) >>> 0) === stored;
  });
}
