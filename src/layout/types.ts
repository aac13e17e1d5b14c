/** What a partition table or LVM says about where volumes lie on the disk. */
import type { ExtentSet } from '../disk/extent-set.js';

/** A region of the disk that may hold a filesystem, named as libguestfs names it. */
export interface Volume {
  /** libguestfs name: /dev/sda (whole disk), /dev/sda1, /dev/sda5 (first logical), /dev/VG/LV. */
  readonly name: string;
  readonly offsetBytes: number;
  readonly sizeBytes: number;
  readonly kind: 'whole-disk' | 'partition' | 'logical-volume';
  /** Partition number as libguestfs counts it (GPT entry index + 1; MBR 1–4 primary, 5+ logical). */
  readonly partitionNumber?: number;
  /** GPT type GUID (lower case, dashed) or MBR type byte as two hex digits. */
  readonly partitionType?: string;
  /** A logical volume LVM marks read-only: virt-sparsify leaves it alone (RHBZ#1185561), and so does the appliance. */
  readonly readOnly?: boolean;
}

/** The partition table found on a disk. */
export interface Layout {
  readonly table: 'gpt' | 'mbr' | 'none';
  readonly diskSizeBytes: number;
  readonly sectorSizeBytes: number;
  /** Every volume, in disk order, excluding MBR extended containers. */
  readonly volumes: readonly Volume[];
  /** Things the report should mention (backup GPT header used, overlapping entries, …). */
  readonly notes: readonly string[];
  /**
   * Disk byte ranges of every partition-table structure the reader parsed (MBR, each EBR of the
   * chain, GPT headers and entry arrays, both copies): they may lie inside a volume's free space,
   * and are never zeroed, discarded or trimmed.
   */
  readonly protectedRanges: ExtentSet;
}
