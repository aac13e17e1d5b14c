/**
 * Whether NTFS's journal, $LogFile, says the volume was shut down cleanly. The decision is the
 * one ntfs-3g and the Linux kernel driver make before a read-write mount (logfile.c,
 * ntfs_check_logfile and ntfs_is_logfile_clean; layouts from logfile.h RESTART_PAGE_HEADER and
 * RESTART_AREA):
 *
 * - a log whose first pages are all 0xFF has been emptied (mkntfs, ntfs-3g) and is clean;
 * - otherwise the restart pages ("RSTR", or "CHKD" after chkdsk) are searched at offset 0 and at
 *   powers of two from 512 (the system page size is not known before one is found); of two
 *   valid pages the one with the higher LSN is current;
 * - the current restart area is clean when no log client is in use or RESTART_VOLUME_IS_CLEAN is
 *   set; a version 2.0 log means Windows 8+ kept metadata cached (Fast Startup or hibernation),
 *   which ntfs-3g refuses as "Metadata kept in Windows cache".
 *
 * Only the restart pages are read, never the log records: like the kernel, a volume idle before
 * an unclean shutdown may be called dirty when it is not, which only costs a fallback.
 */
import { hasAscii, isPowerOfTwo, viewOf } from '../../binary/bytes.js';
import { NTFS_BLOCK_BYTES, type Where } from './common.js';
import { applyUpdateSequence } from './record.js';

/** RESTART_PAGE_HEADER fields. */
const RP = {
  magic: 0x00,
  usaOffset: 0x04,
  usaCount: 0x06,
  chkdskLsn: 0x08,
  systemPageSize: 0x10,
  logPageSize: 0x14,
  restartAreaOffset: 0x18,
  minorVersion: 0x1a,
  majorVersion: 0x1c,
} as const;
const RP_HEADER_BYTES = 0x1e;
/** RESTART_AREA fields. */
const RA = { currentLsn: 0x00, clientInUseList: 0x0c, flags: 0x0e, length: 0x14 } as const;
const RA_MIN_BYTES = 0x30;
/** client_in_use_list value for "no client": the log is closed (LOGFILE_NO_CLIENT). */
const LOGFILE_NO_CLIENT = 0xffff;
/** RESTART_AREA flags: the volume was dismounted cleanly. */
const RESTART_VOLUME_IS_CLEAN = 0x0002;
/** A page never written since the log was emptied starts with 0xFFFFFFFF. */
const EMPTY_MAGIC = 0xffffffff;
/** The largest log page size considered; the scan covers two of them. */
const MAX_PAGE_BYTES = 65536;
/** How much of $LogFile the check reads. */
export const LOGFILE_SCAN_BYTES = 2 * MAX_PAGE_BYTES;
/** The log must hold two restart pages (logfile.c: "$LogFile is too small"). */
export const MIN_LOGFILE_BYTES = 2 * 4096;

/**
 * What the restart pages say. Not clean: `dirty` with changes to replay, `hibernated` when
 * Windows kept its metadata cached (Fast Startup), `unknown` when no restart page decodes.
 */
export type LogFileState =
  | { readonly clean: true; readonly empty: boolean }
  | { readonly clean: false; readonly cause: 'dirty' | 'hibernated' | 'unknown'; readonly reason: string };

interface RestartPage {
  readonly lsn: bigint;
  readonly clean: boolean;
  readonly version: string;
}

function pageSizeOk(size: number): boolean {
  return isPowerOfTwo(size) && size >= NTFS_BLOCK_BYTES && size <= MAX_PAGE_BYTES;
}

function usaHeaderOk(view: DataView, pageBytes: number): boolean {
  const usaOffset = view.getUint16(RP.usaOffset, true);
  const usaCount = view.getUint16(RP.usaCount, true);
  return (
    usaCount === pageBytes / NTFS_BLOCK_BYTES + 1 &&
    usaOffset >= RP_HEADER_BYTES &&
    usaOffset % 2 === 0 &&
    usaOffset + 2 * usaCount <= NTFS_BLOCK_BYTES - 2
  );
}

/** Decodes the restart page at `pos` of the scanned log; undefined when it is not a valid one. */
function parseRestartPage(head: Uint8Array, pos: number, where: Where): RestartPage | undefined {
  if (pos + RP_HEADER_BYTES > head.length) return undefined;
  const header = viewOf(head.subarray(pos));
  const pageBytes = header.getUint32(RP.systemPageSize, true);
  const major = header.getInt16(RP.majorVersion, true);
  const minor = header.getInt16(RP.minorVersion, true);
  const versionOk = (major === 1 && (minor === 0 || minor === 1)) || (major === 2 && minor === 0);
  const sizesOk = pageSizeOk(pageBytes) && pageSizeOk(header.getUint32(RP.logPageSize, true));
  if (!versionOk || !sizesOk || (pos !== 0 && pos !== pageBytes) || pos + pageBytes > head.length) return undefined;
  const page = head.slice(pos, pos + pageBytes);
  const view = viewOf(page);
  const chkdsk = hasAscii(page, RP.magic, 'CHKD');
  const raOffset = view.getUint16(RP.restartAreaOffset, true);
  const protectedPage = !chkdsk || view.getUint16(RP.usaCount, true) !== 0;
  if (protectedPage && !usaHeaderOk(view, pageBytes)) return undefined;
  const usaEnd = protectedPage ? view.getUint16(RP.usaOffset, true) + 2 * view.getUint16(RP.usaCount, true) : RP_HEADER_BYTES;
  if (raOffset % 8 !== 0 || raOffset < usaEnd || raOffset + RA_MIN_BYTES > pageBytes) return undefined;
  const raLength = view.getUint16(raOffset + RA.length, true);
  if (raOffset + raLength > pageBytes) return undefined;
  // A torn restart page is still usable when its restart area lies in the first sector (logfile.c).
  const fixed = !protectedPage || applyUpdateSequence(page, { ...where, offsetBytes: where.offsetBytes + pos }, RP_HEADER_BYTES);
  if (!fixed && raOffset + raLength > NTFS_BLOCK_BYTES - 2) return undefined;
  const clientInUse = view.getUint16(raOffset + RA.clientInUseList, true);
  const flags = view.getUint16(raOffset + RA.flags, true);
  return {
    lsn: chkdsk ? view.getBigInt64(RP.chkdskLsn, true) : view.getBigInt64(raOffset + RA.currentLsn, true),
    clean: clientInUse === LOGFILE_NO_CLIENT || (flags & RESTART_VOLUME_IS_CLEAN) !== 0,
    version: `${major}.${minor}`,
  };
}

/** Finds the restart pages in the first bytes of $LogFile; `empty` when every probed page is unwritten. */
function scanRestartPages(head: Uint8Array, where: Where): { empty: boolean; pages: RestartPage[] } {
  const view = viewOf(head);
  const pages: RestartPage[] = [];
  let empty = true;
  for (let pos = 0; pos + 4 <= head.length; pos = pos === 0 ? NTFS_BLOCK_BYTES : pos * 2) {
    if (view.getUint32(pos, true) !== EMPTY_MAGIC) empty = false;
    else if (!empty) break;
    if (hasAscii(head, pos, 'RCRD')) break;
    if (!hasAscii(head, pos, 'RSTR') && !hasAscii(head, pos, 'CHKD')) continue;
    const page = parseRestartPage(head, pos, where);
    if (!page) continue;
    pages.push(page);
    if (pos !== 0) break;
  }
  return { empty, pages };
}

/** Decides from the first LOGFILE_SCAN_BYTES (or fewer) bytes of $LogFile whether it is clean. */
export function parseLogFileState(head: Uint8Array, where: Where): LogFileState {
  const { empty, pages } = scanRestartPages(head, where);
  if (empty) return { clean: true, empty: true };
  const [first, second] = pages;
  if (!first) return { clean: false, cause: 'unknown', reason: '$LogFile is not empty but has no valid restart page' };
  const current = second && second.lsn > first.lsn ? second : first;
  if (current.version === '2.0') {
    return { clean: false, cause: 'hibernated', reason: 'Windows kept metadata cached for Fast Startup or hibernation ($LogFile version 2.0)' };
  }
  if (!current.clean) return { clean: false, cause: 'dirty', reason: '$LogFile has changes to replay: Windows did not shut down cleanly' };
  return { clean: true, empty: false };
}
