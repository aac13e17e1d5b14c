/**
 * Whether an XFS internal log was cleanly unmounted, decided the way the kernel decides it at
 * mount (fs/xfs/xfs_log_recover.c, xlog_find_head / xlog_find_tail / xlog_check_unmount_rec;
 * the same code is libxlog/xfs_log_recover.c in xfsprogs, which `xfs_logprint -t` reports as
 * "state: <CLEAN>"):
 *
 * 1. The log is a ring of 512-byte basic blocks; each starts with the ring's cycle number (a
 *    record header block holds 0xFEEDBABE there and its cycle in h_cycle). The head, where the
 *    next write would go, is where the cycle drops: found by binary search between block 0
 *    (cycle C) and the last block (C, or C-1; 0 in a log that has not wrapped yet).
 * 2. Behind the head, XLOG_TOTAL_REC_SHIFT blocks (8 in-core logs of the largest record) must
 *    carry C, or C-1 where the window wraps past the end: any other cycle is a write that
 *    overtook an earlier one, i.e. writes were in flight. The kernel would move the head back
 *    and replay; we refuse.
 * 3. The last record header before the head must end exactly at the head, hold one operation,
 *    and that operation must carry XLOG_UNMOUNT_TRANS; on v5 its CRC must match unless it is 0
 *    (mkfs writes 0, which the kernel accepts). Anything else needs log recovery.
 *
 * A log that is all zeros (cycle 0 at block 0) is refused: neither mkfs nor the kernel leaves one.
 * An external log device is not visible through the volume: refused too.
 * Format: libxfs/xfs_log_format.h, struct xlog_rec_header, xlog_rec_ext_header, xlog_op_header.
 */
import type { BlockReader } from '../disk/types.js';
import { u64be, viewOf } from '../layout/bytes.js';
import { BB_BYTES, crc32cUpdate, sameUuid } from './xfs-common.js';
import { agBlockOffsetBytes, agLengthBlocks, type XfsGeometry } from './xfs-sb.js';

const XLOG_HEADER_MAGIC = 0xfeedbabe;
/** struct xlog_rec_header field offsets. */
const REC = { magic: 0, cycle: 4, version: 8, len: 12, lsn: 16, crc: 32, numLogOps: 40, fsUuid: 304, size: 320 } as const;
const XLOG_VERSION_OKBITS = 0x3;
/** Each record (extension) header covers XLOG_HEADER_CYCLE_SIZE bytes of data. */
const XLOG_HEADER_CYCLE_SIZE = 32 * 1024;
const XLOG_MAX_RECORD_BYTES = 256 * 1024;
/** XLOG_TOTAL_REC_SHIFT: XLOG_MAX_ICLOGS (8) records of 256 KiB (v2 logs) or 32 KiB (v1), in basic blocks. */
const MAX_ICLOGS = 8;
const V2_WINDOW_BB = (MAX_ICLOGS * XLOG_MAX_RECORD_BYTES) / BB_BYTES;
const V1_WINDOW_BB = (MAX_ICLOGS * 32 * 1024) / BB_BYTES;
/** sizeof(struct xlog_rec_header) is 328 on 64-bit builds (padded to 8) and 324 on i386; both are in the wild. */
const REC_HEADER_CRC_BYTES = [328, 324];
/** sizeof(struct xlog_rec_ext_header): xh_cycle and 64 cycle words. */
const EXT_HEADER_BYTES = 260;
/** xlog_op_header: oh_flags at byte 9; XLOG_UNMOUNT_TRANS. */
const OP_FLAGS = 9;
const XLOG_UNMOUNT_TRANS = 0x20;
const TWO_32 = 2 ** 32;

/** Where the internal log lies in the volume. */
interface LogPlace {
  readonly offsetBytes: number;
  readonly sizeBB: number;
}

/** Why the log cannot be called clean ("xfs log: …"), or undefined when it was cleanly unmounted. */
export async function readXfsLogRefusal(reader: BlockReader, g: XfsGeometry): Promise<string | undefined> {
  const place = logPlace(g);
  if (typeof place === 'string') return place;
  const head = await findHead(reader, place);
  if (typeof head === 'string') return head;
  const windowBB = Math.min(place.sizeBB, g.logV2 ? V2_WINDOW_BB : V1_WINDOW_BB);
  const window = await readWindow(reader, place, head, windowBB);
  return parseLogTail(window, { headBB: head, sizeBB: place.sizeBB, geometry: g });
}

function logPlace(g: XfsGeometry): LogPlace | string {
  if (g.logStartFsb === 0) return 'xfs has an external log device, whose state cannot be checked from the volume';
  const agno = Math.floor(g.logStartFsb / 2 ** g.agBlockLog);
  const agbno = g.logStartFsb % 2 ** g.agBlockLog;
  const ok = Number.isSafeInteger(g.logStartFsb) && agno < g.agCount && g.logBlocks > 0 && agbno + g.logBlocks <= agLengthBlocks(g, agno);
  if (!ok) return `xfs superblock: the log (${g.logBlocks} blocks at FSB ${g.logStartFsb}) lies outside the filesystem`;
  return { offsetBytes: agBlockOffsetBytes(g, agno, agbno), sizeBB: (g.logBlocks * g.blockSizeBytes) / BB_BYTES };
}

/** The cycle number of the basic block at `offset` of `bytes` (xlog_get_cycle). */
export function logBlockCycle(bytes: Uint8Array, offset = 0): number {
  const v = viewOf(bytes);
  const first = v.getUint32(offset);
  return first === XLOG_HEADER_MAGIC ? v.getUint32(offset + 4) : first;
}

async function readCycle(reader: BlockReader, place: LogPlace, bb: number): Promise<number> {
  return logBlockCycle(await reader.read(place.offsetBytes + bb * BB_BYTES, 8));
}

/** The head block (1..sizeBB; sizeBB when the whole ring has one cycle), or why there is none. */
async function findHead(reader: BlockReader, place: LogPlace): Promise<number | string> {
  const first = await readCycle(reader, place, 0);
  if (first === 0) return 'xfs log is entirely zeroed, so its state is unknown';
  const last = await readCycle(reader, place, place.sizeBB - 1);
  if (last === first) return place.sizeBB;
  if (last !== first - 1) return `xfs log: cycle ${first} at its start and ${last} at its end do not make one ring`;
  let lo = 0;
  let hi = place.sizeBB - 1;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    const cycle = await readCycle(reader, place, mid);
    if (cycle === last) hi = mid;
    else if (cycle === first) lo = mid;
    else return `xfs log: block ${mid} has cycle ${cycle}, neither ${first} nor ${last}: the log needs recovery`;
  }
  return hi;
}

/** The `windowBB` basic blocks just before the head, in log order (wrapping past the end). */
async function readWindow(reader: BlockReader, place: LogPlace, headBB: number, windowBB: number): Promise<Uint8Array> {
  const wrapped = Math.max(0, windowBB - headBB);
  const window = new Uint8Array(windowBB * BB_BYTES);
  if (wrapped > 0) {
    window.set(await reader.read(place.offsetBytes + (place.sizeBB - wrapped) * BB_BYTES, wrapped * BB_BYTES), 0);
  }
  const direct = windowBB - wrapped;
  window.set(await reader.read(place.offsetBytes + (headBB - direct) * BB_BYTES, direct * BB_BYTES), wrapped * BB_BYTES);
  return window;
}

/** The ring around a window of blocks that ends at the head. */
export interface LogWindowPlace {
  readonly headBB: number;
  readonly sizeBB: number;
  readonly geometry: XfsGeometry;
}

/**
 * Pure: given the blocks just before the head, whether they end with a complete unmount record
 * (steps 2 and 3 above); the reason when they do not.
 */
export function parseLogTail(window: Uint8Array, at: LogWindowPlace): string | undefined {
  const windowBB = window.length / BB_BYTES;
  const wrapped = Math.max(0, windowBB - at.headBB);
  const cycle = logBlockCycle(window, (windowBB - 1) * BB_BYTES);
  const physical = (j: number): number => (j < wrapped ? at.sizeBB - wrapped + j : at.headBB - windowBB + j);
  const expected = (j: number): number => (j < wrapped ? cycle - 1 : cycle);
  for (let j = 0; j < windowBB; j++) {
    const found = logBlockCycle(window, j * BB_BYTES);
    if (found !== expected(j)) {
      return `xfs log: block ${physical(j)} has cycle ${found}, not ${expected(j)}: writes were in flight, the log needs recovery`;
    }
  }
  let j = windowBB - 1;
  while (j >= 0 && viewOf(window).getUint32(j * BB_BYTES) !== XLOG_HEADER_MAGIC) j--;
  if (j < 0) return `xfs log: no record header in the ${windowBB} blocks before the head`;
  return unmountRecordRefusal(window, j, { cycle: expected(j), physicalBB: physical(j), geometry: at.geometry });
}

interface RecordPlace {
  readonly cycle: number;
  readonly physicalBB: number;
  readonly geometry: XfsGeometry;
}

const DIRTY = 'xfs log is dirty (not cleanly unmounted): it needs recovery; mount the filesystem once, or run xfs_repair';

/** Step 3: the record at window block `j` must be the unmount record and end exactly at the head. */
function unmountRecordRefusal(window: Uint8Array, j: number, at: RecordPlace): string | undefined {
  const v = viewOf(window);
  const base = j * BB_BYTES;
  const version = v.getUint32(base + REC.version);
  const lenBytes = v.getUint32(base + REC.len);
  const sizeBytes = version & 2 ? v.getUint32(base + REC.size) : 0;
  if (v.getUint32(base + REC.cycle) !== at.cycle) return `xfs log: the record at block ${at.physicalBB} has the wrong cycle`;
  if (version === 0 || version & ~XLOG_VERSION_OKBITS || sizeBytes > XLOG_MAX_RECORD_BYTES || lenBytes > XLOG_MAX_RECORD_BYTES) {
    return `xfs log: the record header at block ${at.physicalBB} is damaged`;
  }
  const lsn = u64be(v, base + REC.lsn);
  if (Math.floor(lsn / TWO_32) !== at.cycle || lsn % TWO_32 !== at.physicalBB) {
    return `xfs log: the record at block ${at.physicalBB} names another place (lsn ${lsn})`;
  }
  const uuid = window.subarray(base + REC.fsUuid, base + REC.fsUuid + 16);
  if (!uuid.every((b) => b === 0) && !sameUuid(uuid, at.geometry.uuid)) return 'xfs log belongs to another filesystem (UUID mismatch)';
  const headerBB = sizeBytes > XLOG_HEADER_CYCLE_SIZE ? Math.ceil(sizeBytes / XLOG_HEADER_CYCLE_SIZE) : 1;
  const windowBB = window.length / BB_BYTES;
  const dataBB = Math.ceil(lenBytes / BB_BYTES);
  if (j + headerBB + dataBB !== windowBB || v.getUint32(base + REC.numLogOps) !== 1 || lenBytes < OP_FLAGS + 1) return DIRTY;
  if (!(window[(j + headerBB) * BB_BYTES + OP_FLAGS]! & XLOG_UNMOUNT_TRANS)) return DIRTY;
  if (at.geometry.version === 5 && !recordCrcOk(window, j, headerBB, lenBytes)) {
    return 'xfs log: the unmount record fails its CRC (a torn write): the log needs recovery';
  }
  return undefined;
}

/** xlog_cksum: the header (CRC field as zero), the extension headers the data needs, then the data. */
function recordCrcOk(window: Uint8Array, j: number, headerBB: number, lenBytes: number): boolean {
  const base = j * BB_BYTES;
  const stored = viewOf(window).getUint32(base + REC.crc, true);
  if (stored === 0) return true;
  const extHeaders = Math.max(1, Math.ceil(lenBytes / XLOG_HEADER_CYCLE_SIZE));
  if (extHeaders > headerBB) return false;
  const dataStart = (j + headerBB) * BB_BYTES;
  return REC_HEADER_CRC_BYTES.some((headerBytes) => {
    let state = crc32cUpdate(0xffffffff, window.subarray(base, base + REC.crc));
    state = crc32cUpdate(state, new Uint8Array(4));
    state = crc32cUpdate(state, window.subarray(base + REC.crc + 4, base + headerBytes));
    for (let i = 1; i < extHeaders; i++) {
      const ext = base + i * BB_BYTES;
      state = crc32cUpdate(state, window.subarray(ext, ext + EXT_HEADER_BYTES));
    }
    state = crc32cUpdate(state, window.subarray(dataStart, dataStart + lenBytes));
    return ((state ^ 0xffffffff) >>> 0) === stored;
  });
}
