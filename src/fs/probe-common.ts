/** What every superblock detector returns, and the small helpers they share. */
import type { BlockReader } from '../disk/types.js';
import type { ProbeResult } from './types.js';

/** A signature that matched, and a deeper check of its own structures for when others match too. */
export interface Detected {
  readonly result: ProbeResult;
  /** Where the matching magic lies in the volume, for the notes. */
  readonly magicOffsetBytes: number;
  /** Reads one more structure (group descriptors, first FAT, $MFT, AGF) to confirm it is live. */
  confirm(): Promise<boolean>;
}

/** A detector gets the volume and its first bytes (see PROBE_HEAD_BYTES in probe.ts). */
export type Detector = (reader: BlockReader, head: Uint8Array) => Promise<Detected | undefined>;

/** For detectors with nothing more to check than their magic and checksums. */
export const alwaysLive = (): Promise<boolean> => Promise.resolve(true);

/** Whether [offset, offset+length) lies inside the volume. */
export function fits(reader: BlockReader, offsetBytes: number, lengthBytes: number): boolean {
  return offsetBytes >= 0 && lengthBytes >= 0 && offsetBytes + lengthBytes <= reader.sizeBytes;
}

/** Reads from `head` when it covers the range, else from the volume (the caller checked `fits`). */
export function readAt(
  reader: BlockReader,
  head: Uint8Array,
  offsetBytes: number,
  lengthBytes: number,
): Promise<Uint8Array> {
  if (offsetBytes + lengthBytes <= head.length) {
    return Promise.resolve(head.subarray(offsetBytes, offsetBytes + lengthBytes));
  }
  return reader.read(offsetBytes, lengthBytes);
}

/** `{label}` when the label is not empty, so that results carry no empty labels. */
export function labelField(label: string | undefined): { label?: string } {
  return label ? { label } : {};
}
