/**
 * An NTFS volume opened for reading its metadata: the geometry from the boot sector, and
 * attribute streams read through their data runs. Byte offsets are volume-relative numbers
 * (exact to 8 PiB). Every run is checked to lie inside the volume's clusters before any read.
 */
import { u64le, viewOf } from '../../binary/bytes.js';
import type { BlockReader } from '../../disk/types.js';
import { parseNtfsBootSector } from './probe.js';
import { badNtfs, untrusted, type Where } from './common.js';
import { parseMftRecord, type MftRecord } from './record.js';
import { findRun, type DataRun } from './runs.js';

const BOOT_SECTOR_BYTES = 512;
/** Boot sector: total sectors, LCN of $MFTMirr (Linux-NTFS "Files: $Boot"). */
const BS_TOTAL_SECTORS = 0x28;
const BS_MFT_MIRR_LCN = 0x38;
/** MFT record sizes Windows and mkntfs create (1 KiB; 4 KiB on 4Kn disks). */
const MFT_RECORD_SIZES: readonly number[] = [1024, 2048, 4096];
/** The largest cluster Windows formats (2 MiB since Windows 10 1709). */
const MAX_CLUSTER_BYTES = 2 * 1024 * 1024;

/** What the boot sector says about the volume, checked against the reader. */
export interface NtfsGeometry {
  readonly bytesPerSector: number;
  readonly clusterBytes: number;
  /** Clusters of the filesystem: total sectors / sectors per cluster, rounded down. */
  readonly clusterCount: number;
  readonly mftRecordBytes: number;
  readonly mftLcn: number;
  readonly mftMirrLcn: number;
}

/** The value of an attribute: in the record, or in clusters. */
export type Stream =
  | {
      readonly resident: true;
      readonly flags: number;
      readonly where: Where;
      readonly dataBytes: number;
      readonly value: Uint8Array;
    }
  | {
      readonly resident: false;
      readonly flags: number;
      readonly where: Where;
      /** Runs sorted by VCN from 0, gap-free. */
      readonly runs: readonly DataRun[];
      readonly allocatedBytes: number;
      readonly dataBytes: number;
      /** Bytes at or beyond this read as zeros. */
      readonly initializedBytes: number;
    };

/** A stream stored in clusters. */
export type RunStream = Extract<Stream, { resident: false }>;

/** Decodes and checks the boot sector; BAD_IMAGE when it is not NTFS, untrusted when its geometry is odd. */
function parseNtfsGeometry(sector: Uint8Array, volumeBytes: number): NtfsGeometry {
  const bs = parseNtfsBootSector(sector);
  if (!bs) badNtfs({ what: 'boot sector', offsetBytes: 0 }, 0, 'not an NTFS boot sector');
  if (!MFT_RECORD_SIZES.includes(bs.mftRecordBytes)) {
    untrusted(`MFT record size ${bs.mftRecordBytes} is not one of ${MFT_RECORD_SIZES.join(', ')}`);
  }
  if (bs.clusterBytes > MAX_CLUSTER_BYTES) untrusted(`cluster size ${bs.clusterBytes} is larger than NTFS allows`);
  const filesystemBytes = bs.totalSectors * bs.bytesPerSector;
  if (!Number.isSafeInteger(filesystemBytes)) badNtfs({ what: 'boot sector', offsetBytes: 0 }, BS_TOTAL_SECTORS, 'total sectors out of range');
  if (filesystemBytes > volumeBytes) {
    untrusted(`the boot sector says ${bs.totalSectors} sectors, more than the ${volumeBytes}-byte volume holds`);
  }
  const clusterCount = Math.floor(filesystemBytes / bs.clusterBytes);
  const mftLcn = bs.mftOffsetBytes / bs.clusterBytes;
  const mftMirrLcn = u64le(viewOf(sector), BS_MFT_MIRR_LCN);
  if (clusterCount === 0 || mftLcn >= clusterCount || !(mftMirrLcn < clusterCount)) {
    badNtfs({ what: 'boot sector', offsetBytes: 0 }, 0, `$MFT or $MFTMirr lies beyond the ${clusterCount} clusters`);
  }
  return {
    bytesPerSector: bs.bytesPerSector,
    clusterBytes: bs.clusterBytes,
    clusterCount,
    mftRecordBytes: bs.mftRecordBytes,
    mftLcn,
    mftMirrLcn,
  };
}

/** Reads the boot sector of the volume and decodes its geometry. */
export async function readNtfsGeometry(reader: BlockReader): Promise<NtfsGeometry> {
  if (reader.sizeBytes < BOOT_SECTOR_BYTES) badNtfs({ what: 'boot sector', offsetBytes: 0 }, 0, 'volume is smaller than a boot sector');
  return parseNtfsGeometry(await reader.read(0, BOOT_SECTOR_BYTES), reader.sizeBytes);
}

/** Checks a run list against the volume and the attribute's sizes; returns the stream. */
export function runStream(
  geometry: NtfsGeometry,
  where: Where,
  runs: readonly DataRun[],
  sizes: { flags: number; allocatedBytes: number; dataBytes: number; initializedBytes: number },
): RunStream {
  for (const run of runs) {
    if (run.lcn !== undefined && run.lcn + run.clusters > geometry.clusterCount) {
      badNtfs(where, 0, `data run at LCN ${run.lcn} (${run.clusters} clusters) lies beyond the ${geometry.clusterCount} clusters`);
    }
  }
  if (sizes.initializedBytes > sizes.dataBytes || sizes.dataBytes > sizes.allocatedBytes) {
    badNtfs(where, 0, `sizes out of order: initialized ${sizes.initializedBytes}, data ${sizes.dataBytes}, allocated ${sizes.allocatedBytes}`);
  }
  return { resident: false, where, runs, ...sizes };
}

/** The volume's reader, geometry and $MFT, for reading records and attribute streams. */
export class NtfsVolume {
  constructor(
    readonly reader: BlockReader,
    readonly geometry: NtfsGeometry,
    /** $MFT's unnamed $DATA; while bootstrapping, only its first extent. */
    readonly mft: RunStream,
  ) {}

  /** Records the $MFT holds (initialized bytes / record size). */
  get recordCount(): number {
    return Math.floor(this.mft.initializedBytes / this.geometry.mftRecordBytes);
  }

  /** Reads and decodes MFT record `number`; BAD_IMAGE when it is beyond $MFT or does not decode. */
  async readRecord(number: number, referrer: Where): Promise<MftRecord> {
    if (!Number.isSafeInteger(number) || number < 0 || number >= this.recordCount) {
      badNtfs(referrer, 0, `MFT record ${number} is beyond the ${this.recordCount} records of $MFT`);
    }
    const offsetBytes = number * this.geometry.mftRecordBytes;
    const raw = await this.readStream(this.mft, offsetBytes, this.geometry.mftRecordBytes);
    return parseMftRecord(raw, number, this.volumeOffset(this.mft, offsetBytes));
  }

  /** Reads [offset, offset+length) of a stream: sparse runs and bytes past the initialized size read as zeros. */
  async readStream(stream: Stream, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > stream.dataBytes) {
      badNtfs(stream.where, 0, `read ${offsetBytes}+${lengthBytes} is outside the ${stream.dataBytes}-byte value`);
    }
    if (stream.resident) return stream.value.slice(offsetBytes, offsetBytes + lengthBytes);
    const out = new Uint8Array(lengthBytes);
    const end = Math.min(offsetBytes + lengthBytes, stream.initializedBytes);
    const cluster = this.geometry.clusterBytes;
    let pos = offsetBytes;
    let index = pos < end ? this.runIndex(stream, pos) : -1;
    while (pos < end) {
      const run = stream.runs[index];
      if (!run || run.vcn * cluster > pos) badNtfs(stream.where, 0, `byte ${pos} of the stream is not mapped by its data runs`);
      const runStart = run.vcn * cluster;
      const chunkEnd = Math.min(end, runStart + run.clusters * cluster);
      if (run.lcn !== undefined) {
        out.set(await this.reader.read(run.lcn * cluster + (pos - runStart), chunkEnd - pos), pos - offsetBytes);
      }
      pos = chunkEnd;
      index++;
    }
    return out;
  }

  /** The volume byte offset of stream byte `offsetBytes` (for messages); the stream's own offset when unmapped. */
  volumeOffset(stream: RunStream, offsetBytes: number): number {
    const run = stream.runs[findRun(stream.runs, Math.floor(offsetBytes / this.geometry.clusterBytes))];
    if (!run || run.lcn === undefined) return stream.where.offsetBytes;
    return run.lcn * this.geometry.clusterBytes + (offsetBytes - run.vcn * this.geometry.clusterBytes);
  }

  private runIndex(stream: RunStream, offsetBytes: number): number {
    const index = findRun(stream.runs, Math.floor(offsetBytes / this.geometry.clusterBytes));
    if (index < 0) badNtfs(stream.where, 0, `byte ${offsetBytes} of the stream is not mapped by its data runs`);
    return index;
  }
}
