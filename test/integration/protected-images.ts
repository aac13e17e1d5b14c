/**
 * Hand-made disks whose partition-table structures lie in a filesystem's free blocks: an MBR
 * whose EBR for logical 6 sits inside logical 5's ext4, and a GPT whose entry arrays sit inside
 * its partitions. Each comes with a make-image style manifest for test/helpers/verify.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { crc32 } from '../../src/binary/crc32.js';
import { readBytes, type Manifest, type ManifestVolume } from '../helpers/verify.js';

const MiB = 1024 * 1024;
const SECTOR = 512;
const BLOCK = 4096;
export const DISK_BYTES = 64 * MiB;

/** A built disk, its manifest, and where the structures under test are. */
export interface HandMade {
  readonly imagePath: string;
  readonly manifestPath: string;
  /** Partition-table sectors (byte offsets) the test checks by hand. */
  readonly tableRanges: readonly { offsetBytes: number; sizeBytes: number }[];
}

export async function writeAt(path: string, offsetBytes: number, data: Uint8Array): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offsetBytes);
  } finally {
    await fh.close();
  }
}

/**
 * Fills a volume with garbage (what sparsify should reclaim), makes an ext4 with 4 KiB blocks
 * on it and writes a few random files; returns the manifest entry.
 */
async function makeExt4(image: string, dir: string, name: string, offsetBytes: number, sizeBytes: number): Promise<ManifestVolume> {
  for (let at = 0; at < sizeBytes; at += MiB) await writeAt(image, offsetBytes + at, randomBytes(Math.min(MiB, sizeBytes - at)));
  const tree = join(dir, `tree-${name.replace(/\W/g, '')}`);
  await mkdir(join(tree, 'sub'), { recursive: true });
  const files: Record<string, string> = {};
  for (const [path, bytes] of [['a.bin', 300_000], ['sub/b.bin', 1_000_000], ['c.txt', 12]] as const) {
    const data = randomBytes(bytes);
    await writeFile(join(tree, path), data);
    files[path] = createHash('sha256').update(data).digest('hex');
  }
  const { stdout: loop } = await execa('losetup', ['--find', '--show', '--offset', String(offsetBytes), '--sizelimit', String(sizeBytes), image]);
  try {
    // -d fills it without a mount; nodiscard keeps the garbage in the free blocks.
    await execa('mkfs.ext4', ['-q', '-F', '-b', String(BLOCK), '-L', name.slice(-4), '-d', tree, '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', loop]);
  } finally {
    await execa('losetup', ['--detach', loop]);
  }
  await rm(tree, { recursive: true });
  return { name, fs: 'ext4', label: '', uuid: '', offsetBytes, sizeBytes, liveBytes: 0, files, symlinks: {} };
}

/** A free 4 KiB block of the ext4 at `offsetBytes` near block `goal` (debugfs reads, never writes). */
async function freeBlock(image: string, offsetBytes: number, sizeBytes: number, goal: number, count = 1): Promise<number> {
  const { stdout: loop } = await execa('losetup', ['--find', '--show', '--read-only', '--offset', String(offsetBytes), '--sizelimit', String(sizeBytes), image]);
  try {
    for (let block = goal; block < goal + 512; block++) {
      const { stdout } = await execa('debugfs', ['-R', `testb ${block} ${count}`, loop]);
      if (!/marked in use/.test(stdout)) return block;
    }
    throw new Error(`no ${count} free blocks near block ${goal}`);
  } finally {
    await execa('losetup', ['--detach', loop]);
  }
}

/** An MBR/EBR entry: type, first LBA (relative as the table wants it), sector count. */
function putEntry(sector: Buffer, slot: number, type: number, firstLba: number, sectors: number): void {
  const at = 446 + slot * 16;
  sector[at + 4] = type;
  sector.writeUInt32LE(firstLba, at + 8);
  sector.writeUInt32LE(sectors, at + 12);
  sector[510] = 0x55;
  sector[511] = 0xaa;
}

async function writeManifest(image: string, layout: 'mbr' | 'gpt', volumes: ManifestVolume[], ranges: HandMade['tableRanges']): Promise<string> {
  const hash = createHash('sha256');
  for (const r of ranges) hash.update(await readBytes(image, r.offsetBytes, r.sizeBytes));
  const manifest: Manifest = {
    version: 1,
    layout,
    format: 'raw',
    virtualSizeBytes: DISK_BYTES,
    seed: 0,
    fillMiB: 0,
    garbageMiB: 0,
    partitionTable: { kind: layout, sha256: hash.digest('hex'), ranges: [...ranges] },
    volumes,
  };
  const path = `${image}.manifest.json`;
  await writeFile(path, JSON.stringify(manifest, null, 2));
  return path;
}

async function blankImage(path: string): Promise<void> {
  await (await open(path, 'w')).close();
  await truncate(path, DISK_BYTES);
}

/**
 * MBR: primary 1 (8 MiB), extended 2 to the end, logical 5 (24 MiB) and logical 6 after it.
 * The EBR that links logical 6 is written into a free block in the middle of logical 5's ext4,
 * after the filesystem is complete: ext4 still counts that block as free.
 */
export async function buildEbrInFreeSpace(dir: string): Promise<HandMade & { ebr6Offset: number }> {
  const image = join(dir, 'ebr.raw');
  await blankImage(image);
  const p1 = { start: 2048, sectors: 16384 };
  const ext = { start: 18432, sectors: DISK_BYTES / SECTOR - 18432 };
  const l5 = { start: 20480, sectors: 49152 };
  const l6 = { start: 71680, sectors: DISK_BYTES / SECTOR - 71680 };
  const volumes = [
    await makeExt4(image, dir, '/dev/sda1', p1.start * SECTOR, p1.sectors * SECTOR),
    await makeExt4(image, dir, '/dev/sda5', l5.start * SECTOR, l5.sectors * SECTOR),
    await makeExt4(image, dir, '/dev/sda6', l6.start * SECTOR, l6.sectors * SECTOR),
  ];
  const block = await freeBlock(image, l5.start * SECTOR, l5.sectors * SECTOR, 3000);
  const ebr6 = l5.start + (block * BLOCK) / SECTOR;
  const mbr = Buffer.alloc(SECTOR);
  putEntry(mbr, 0, 0x83, p1.start, p1.sectors);
  putEntry(mbr, 1, 0x05, ext.start, ext.sectors);
  const ebr5 = Buffer.alloc(SECTOR);
  putEntry(ebr5, 0, 0x83, l5.start - ext.start, l5.sectors);
  putEntry(ebr5, 1, 0x05, ebr6 - ext.start, l6.start + l6.sectors - ebr6);
  const ebr6Sector = Buffer.alloc(SECTOR);
  putEntry(ebr6Sector, 0, 0x83, l6.start - ebr6, l6.sectors);
  await writeAt(image, 0, mbr);
  await writeAt(image, ext.start * SECTOR, ebr5);
  await writeAt(image, ebr6 * SECTOR, ebr6Sector);
  const tableRanges = [0, ext.start, ebr6].map((lba) => ({ offsetBytes: lba * SECTOR, sizeBytes: SECTOR }));
  const manifestPath = await writeManifest(image, 'mbr', volumes, tableRanges);
  return { imagePath: image, manifestPath, tableRanges, ebr6Offset: ebr6 * SECTOR };
}

/** Points the GPT header at `headerLba` to an entry array moved to `entriesLba`, and refreshes its CRC. */
async function moveEntryArray(image: string, headerLba: number, entriesLba: number): Promise<void> {
  const header = await readBytes(image, headerLba * SECTOR, SECTOR);
  const oldLba = Number(header.readBigUInt64LE(72));
  const arrayBytes = header.readUInt32LE(80) * header.readUInt32LE(84);
  const array = await readBytes(image, oldLba * SECTOR, arrayBytes);
  await writeAt(image, oldLba * SECTOR, Buffer.alloc(arrayBytes));
  await writeAt(image, entriesLba * SECTOR, array);
  header.writeBigUInt64LE(BigInt(entriesLba), 72);
  header.writeUInt32LE(0, 16);
  header.writeUInt32LE(crc32(header.subarray(0, header.readUInt32LE(12))), 16);
  await writeAt(image, headerLba * SECTOR, header);
}

/**
 * GPT: partitions 1 (24 MiB) and 2 (to the end), both ext4; the primary entry array moved into
 * free blocks of partition 1 and the backup's into free blocks of partition 2. Valid for Linux
 * (efi.c does not check where the arrays lie); nothing but the protected set keeps them.
 */
export async function buildGptEntriesInPartitions(dir: string): Promise<HandMade> {
  const image = join(dir, 'gpt.raw');
  await blankImage(image);
  await execa('sgdisk', ['-n1:2048:+24M', '-t1:8300', '-n2:0:0', '-t2:8300', image]);
  const lastLba = DISK_BYTES / SECTOR - 1;
  const p1 = { start: 2048, sectors: 49152 };
  const p2 = { start: 2048 + 49152, sectors: lastLba - 33 - (2048 + 49152) + 1 };
  const volumes = [
    await makeExt4(image, dir, '/dev/sda1', p1.start * SECTOR, p1.sectors * SECTOR),
    await makeExt4(image, dir, '/dev/sda2', p2.start * SECTOR, p2.sectors * SECTOR),
  ];
  const arraySectors = 32;
  const b1 = await freeBlock(image, p1.start * SECTOR, p1.sectors * SECTOR, 4000, arraySectors / 8);
  const b2 = await freeBlock(image, p2.start * SECTOR, p2.sectors * SECTOR, 3000, arraySectors / 8);
  const primaryEntries = p1.start + (b1 * BLOCK) / SECTOR;
  const backupEntries = p2.start + (b2 * BLOCK) / SECTOR;
  await moveEntryArray(image, 1, primaryEntries);
  await moveEntryArray(image, lastLba, backupEntries);
  const tableRanges = [
    { offsetBytes: 0, sizeBytes: 2 * SECTOR },
    { offsetBytes: primaryEntries * SECTOR, sizeBytes: arraySectors * SECTOR },
    { offsetBytes: backupEntries * SECTOR, sizeBytes: arraySectors * SECTOR },
    { offsetBytes: lastLba * SECTOR, sizeBytes: SECTOR },
  ];
  const manifestPath = await writeManifest(image, 'gpt', volumes, tableRanges);
  return { imagePath: image, manifestPath, tableRanges };
}
