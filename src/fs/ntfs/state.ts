/**
 * The state of an NTFS volume, checked as ntfs-3g checks it before a read-write mount: the
 * $Volume flags, the $LogFile restart area (logfile.ts) and /hiberfil.sys (hiberfil.ts). Each
 * finding is typed, `dirty` (not shut down cleanly) or `hibernated` (Windows hibernated, or shut
 * down with Fast Startup): the probe reports them as ProbeResult fields, the free-map reader
 * refuses the bitmap with the first finding's reason. These are metadata reads only: the boot
 * sector, $MFT's record, four system records, the restart pages, the root index, 4 bytes of
 * hiberfil.sys.
 */
import type { BlockReader } from '../../disk/types.js';
import type { FsState } from '../types.js';
import { ATTR_TYPE, MFT_RECORD, NtfsUntrusted, badNtfs, untrusted } from './common.js';
import { readHibernationReason } from './hiberfil.js';
import { LOGFILE_SCAN_BYTES, MIN_LOGFILE_BYTES, parseLogFileState } from './logfile.js';
import { openNtfsVolume, readSystemRecord } from './open.js';
import { readAttributeStream } from './stream.js';
import type { NtfsVolume, Stream } from './volume.js';

/** $VOLUME_INFORMATION value: major and minor version, flags (layout.h VOLUME_INFORMATION). */
const VI = { major: 0x08, minor: 0x09, flags: 0x0a } as const;
const VI_BYTES = 0x0c;
/** VOLUME_FLAGS that forbid trusting the on-disk maps. */
const VOLUME_IS_DIRTY = 0x0001;
const VOLUME_CHKDSK_UNDERWAY = 0x4000;
const SUPPORTED_MAJOR_VERSIONS: readonly number[] = [1, 3];

/** One reason the volume's bitmap is not the truth, by what it means. */
export interface NtfsFinding {
  readonly state: 'dirty' | 'hibernated';
  readonly reason: string;
}

/** What the state checks found, and what the free-map reader needs of them. */
export interface NtfsVolumeState {
  /** "major.minor" of $VOLUME_INFORMATION. */
  readonly version: string;
  readonly logFile: Stream;
  /** In the order the checks ran; empty when the volume was left clean. */
  readonly findings: readonly NtfsFinding[];
}

/**
 * Runs the checks on an opened volume. A state that cannot be known (an unsupported version, a
 * $LogFile too small or without a restart page, a hiberfil.sys that cannot be checked) stops
 * them with NtfsUntrusted; damage throws BAD_IMAGE.
 */
export async function readNtfsVolumeState(volume: NtfsVolume): Promise<NtfsVolumeState> {
  const findings: NtfsFinding[] = [];
  const record = await readSystemRecord(volume, MFT_RECORD.volume);
  const info = await readAttributeStream(volume, record, ATTR_TYPE.volumeInformation, '');
  if (!info?.resident || info.value.length < VI_BYTES) badNtfs(record.where, 0, '$Volume has no resident $VOLUME_INFORMATION');
  const [major, minor] = [info.value[VI.major]!, info.value[VI.minor]!];
  const flags = info.value[VI.flags]! | (info.value[VI.flags + 1]! << 8);
  if (!SUPPORTED_MAJOR_VERSIONS.includes(major)) untrusted(`NTFS version ${major}.${minor} is not supported`);
  if (flags & VOLUME_IS_DIRTY) {
    findings.push({ state: 'dirty', reason: 'the volume dirty flag is set: Windows did not shut down cleanly or chkdsk is scheduled' });
  }
  if (flags & VOLUME_CHKDSK_UNDERWAY) findings.push({ state: 'dirty', reason: 'chkdsk was interrupted on this volume' });
  const logFile = await readLogFile(volume, findings);
  const hibernation = await readHibernationReason(volume);
  if (hibernation) findings.push({ state: 'hibernated', reason: hibernation });
  return { version: `${major}.${minor}`, logFile, findings };
}

/** The $LogFile stream; its restart area's finding, if any, joins `findings`. */
async function readLogFile(volume: NtfsVolume, findings: NtfsFinding[]): Promise<Stream> {
  const record = await readSystemRecord(volume, MFT_RECORD.logFile);
  const log = await readAttributeStream(volume, record, ATTR_TYPE.data, '');
  if (!log || log.resident) badNtfs(record.where, 0, '$LogFile has no non-resident $DATA');
  if (log.dataBytes < MIN_LOGFILE_BYTES) untrusted(`$LogFile is only ${log.dataBytes} bytes`);
  const head = await volume.readStream(log, 0, Math.min(log.dataBytes, LOGFILE_SCAN_BYTES));
  const state = parseLogFileState(head, { what: '$LogFile', offsetBytes: volume.volumeOffset(log, 0) });
  if (!state.clean) {
    if (state.cause === 'unknown') untrusted(state.reason);
    findings.push({ state: state.cause, reason: state.reason });
  }
  return log;
}

/** The probe's typed state of an NTFS volume; nothing when its state cannot be known. */
export async function readNtfsState(reader: BlockReader): Promise<FsState> {
  let findings: readonly NtfsFinding[];
  try {
    ({ findings } = await readNtfsVolumeState(await openNtfsVolume(reader)));
  } catch (err) {
    if (err instanceof NtfsUntrusted) return {};
    throw err;
  }
  return {
    ...(findings.some((f) => f.state === 'hibernated') ? { hibernated: true } : {}),
    ...(findings.some((f) => f.state === 'dirty') ? { dirty: true } : {}),
  };
}
