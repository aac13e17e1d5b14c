/** What a partition-table rewrite takes and gives: new places by partition number, sector writes. */

/** Where a partition lies on the new disk, in logical blocks (the table's own unit). */
export interface NewPlace {
  readonly firstLba: number;
  readonly sectors: number;
}

/** Partition number (as libguestfs counts it: GPT entry index + 1; MBR 1–4, 5+ logical) → its new place. */
export type NewPlaces = ReadonlyMap<number, NewPlace>;

/** Bytes to write at a byte offset of the new disk. */
export interface SectorWrite {
  readonly offsetBytes: number;
  readonly bytes: Uint8Array;
}
