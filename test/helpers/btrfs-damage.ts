/**
 * Real damage to a btrfs, for the fault tests: one leaf of the top-level subvolume's tree (the
 * FS tree, owner 5) has 16 bytes of its first item key inverted in every copy (DUP metadata keeps
 * two), so its checksum no longer matches and `btrfs check` finds the filesystem damaged. The
 * superblock and the chunk, root and extent trees stay intact: the filesystem is still found,
 * probed and opened, and only the check says no.
 */
import { open } from 'node:fs/promises';

/** Offsets in the superblock (64 KiB into the filesystem) and in a tree block's header. */
const SUPER_OFFSET = 0x10000;
const SB = { fsid: 0x20, sectorSize: 0x90 } as const;
const HEADER = { fsid: 0x20, bytenr: 0x30, generation: 0x50, owner: 0x58, level: 0x64, size: 0x65 } as const;
const FS_TREE_OBJECTID = 5n;
const DAMAGED_BYTES = 16;
const READ_BYTES = 1 << 20;

interface Leaf {
  /** Where the copy lies, from the start of the filesystem. */
  readonly atBytes: number;
  readonly bytenr: bigint;
  readonly generation: bigint;
}

/**
 * Damages the newest FS-tree leaf (every copy of it) of the btrfs at `offsetBytes` (`sizeBytes`
 * long) in `file`; resolves with the leaf's logical address and how many copies were damaged.
 */
export async function damageBtrfsLeaf(file: string, offsetBytes: number, sizeBytes: number): Promise<{ bytenr: bigint; copies: number }> {
  const f = await open(file, 'r+');
  try {
    const sb = Buffer.alloc(4096);
    await f.read(sb, 0, sb.length, offsetBytes + SUPER_OFFSET);
    const fsid = Buffer.from(sb.subarray(SB.fsid, SB.fsid + 16));
    const sectorBytes = sb.readUInt32LE(SB.sectorSize);
    if (sectorBytes < 4096 || sectorBytes % 4096 !== 0) throw new Error(`no btrfs superblock at ${offsetBytes} in ${file}`);
    const leaves: Leaf[] = [];
    const buf = Buffer.alloc(READ_BYTES);
    for (let at = 0; at < sizeBytes; at += READ_BYTES) {
      const { bytesRead } = await f.read(buf, 0, Math.min(READ_BYTES, sizeBytes - at), offsetBytes + at);
      for (let i = 0; i + HEADER.size + DAMAGED_BYTES <= bytesRead; i += sectorBytes) {
        const h = buf.subarray(i);
        if (!h.subarray(HEADER.fsid, HEADER.fsid + 16).equals(fsid) || h.readBigUInt64LE(HEADER.owner) !== FS_TREE_OBJECTID || h[HEADER.level] !== 0) continue;
        leaves.push({ atBytes: at + i, bytenr: h.readBigUInt64LE(HEADER.bytenr), generation: h.readBigUInt64LE(HEADER.generation) });
      }
    }
    if (leaves.length === 0) throw new Error(`no FS-tree leaf found in the btrfs at ${offsetBytes} in ${file}`);
    // The newest generation is the leaf in use (an older copy of the tree may still lie in free space).
    const newest = leaves.reduce((a, b) => (b.generation > a.generation ? b : a));
    const copies = leaves.filter((l) => l.bytenr === newest.bytenr);
    for (const copy of copies) {
      const bytes = Buffer.alloc(DAMAGED_BYTES);
      const position = offsetBytes + copy.atBytes + HEADER.size;
      await f.read(bytes, 0, DAMAGED_BYTES, position);
      for (let k = 0; k < DAMAGED_BYTES; k++) bytes[k] = bytes[k]! ^ 0xff;
      await f.write(bytes, 0, DAMAGED_BYTES, position);
    }
    return { bytenr: newest.bytenr, copies: copies.length };
  } finally {
    await f.close();
  }
}
