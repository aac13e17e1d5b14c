/**
 * Random partition tables for the protected-ranges fuzzer: MBRs whose EBR chains put their EBRs
 * anywhere in the extended partition (inside other logical partitions too), and GPTs whose entry
 * arrays and backup header lie anywhere, partitions included. Each disk comes with the volumes a
 * reader must find and the byte ranges of every structure it must parse.
 */
import { crc32 } from '../../../src/binary/crc32.js';
import type { Range } from '../../../src/disk/extent-set.js';
import { randInt } from '../../helpers/copy-fakes.js';
import { ESP_GUID, LINUX_FS_GUID, flip, putAscii, putGuid, putMbrEntries, view } from './fixtures.js';

/** What a reader must find on a generated disk. */
export interface Expected {
  readonly table: 'mbr' | 'gpt';
  /** Volumes as [number, first byte, size in bytes], in disk order. */
  readonly volumes: readonly (readonly [number, number, number])[];
  /** Every structure the reader parses. */
  readonly structures: readonly Range[];
}

export interface Generated {
  readonly disk: Uint8Array;
  readonly expected: Expected;
}

type Rand = () => number;

/** Fills the disk with non-zero bytes cheaply (one random 4 KiB block, repeated), so that zeroing a volume shows. */
function fillPattern(disk: Uint8Array, seed: number): void {
  const block = Math.min(4096, disk.length);
  let x = (seed | 1) >>> 0;
  for (let i = 0; i < block; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    disk[i] = 1 + ((x >>> 0) % 255);
  }
  for (let filled = block; filled < disk.length; filled *= 2) disk.copyWithin(filled, 0, Math.min(filled, disk.length - filled));
}

/** `count` disjoint random runs of at least `minLen` inside [lo, hi), in increasing order. */
function disjointRuns(rand: Rand, lo: number, hi: number, count: number, minLen: number): Range[] {
  const cuts = Array.from({ length: count * 2 }, () => randInt(rand, lo, hi)).sort((a, b) => a - b);
  const runs: Range[] = [];
  for (let i = 0; i < count; i++) {
    const start = cuts[2 * i]!;
    const end = cuts[2 * i + 1]!;
    if (end - start >= minLen) runs.push({ start, end });
  }
  return runs;
}

function sectorRange(lba: number, sectorBytes: number, sectors = 1): Range {
  return { start: lba * sectorBytes, end: (lba + sectors) * sectorBytes };
}

function shuffle<T>(rand: Rand, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randInt(rand, 0, i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

const DATA_TYPES = [0x83, 0x07, 0x0b, 0x0c, 0x82, 0x8e, 0x01];
const EXTENDED_TYPES = [0x05, 0x0f, 0x85];
const pick = <T>(rand: Rand, items: readonly T[]): T => items[randInt(rand, 0, items.length)]!;

/** Clears the four entries of an MBR/EBR sector (random bytes there could read as a link). */
function clearEntries(disk: Uint8Array, lba: number): void {
  disk.fill(0, lba * 512 + 446, lba * 512 + 510);
}

/**
 * An MBR disk: up to three data primaries and one extended partition whose chain of logical
 * partitions has its EBRs at random sectors before their partitions: in gaps, or inside other
 * logical partitions. Some EBRs describe no partition; some chains end on a link to a sector
 * without a signature (zero or garbage).
 */
export function randomMbrDisk(rand: Rand, seed: number): Generated {
  const sectors = randInt(rand, 512, 3072);
  const disk = new Uint8Array(sectors * 512);
  fillPattern(disk, seed);
  disk.fill(0, 0, 512);
  const runs = disjointRuns(rand, 1, sectors, 4, 64);
  const regions = runs.length > 0 ? runs : [{ start: 1, end: sectors }];
  const extIndex = randInt(rand, 0, regions.length);
  const slots = shuffle(rand, [0, 1, 2, 3]);
  const volumes: [number, number, number][] = [];
  const structures: Range[] = [sectorRange(0, 512)];
  const mbr = regions.map((r, i) => {
    const ext = i === extIndex;
    const type = ext ? pick(rand, EXTENDED_TYPES) : pick(rand, DATA_TYPES);
    if (!ext) volumes.push([slots[i]! + 1, r.start * 512, (r.end - r.start) * 512]);
    return { slot: slots[i]!, type, firstLba: r.start, sectors: r.end - r.start };
  });
  putMbrEntries(disk, 0, mbr);
  const ext = regions[extIndex];
  if (ext) volumes.push(...writeChain(rand, disk, ext, structures));
  volumes.sort((a, b) => a[1] - b[1]);
  return { disk, expected: { table: 'mbr', volumes, structures } };
}

/** Writes the EBR chain of the extended partition `ext`; returns its logical partitions. */
function writeChain(rand: Rand, disk: Uint8Array, ext: Range, structures: Range[]): [number, number, number][] {
  const logicals = shuffle(rand, disjointRuns(rand, ext.start + 1, ext.end, randInt(rand, 1, 7), 2));
  const ebrs: number[] = [];
  const used = new Set<number>();
  for (const [i, l] of logicals.entries()) {
    // The first EBR is the extended partition's first sector; the others lie anywhere before their partition.
    if (i > 0 && l.start <= ext.start + 1) break;
    const ebr = i === 0 ? ext.start : randInt(rand, ext.start + 1, l.start);
    if (used.has(ebr)) break;
    used.add(ebr);
    ebrs.push(ebr);
  }
  const volumes: [number, number, number][] = [];
  const linkType = pick(rand, EXTENDED_TYPES);
  for (const [i, ebr] of ebrs.entries()) {
    const l = logicals[i]!;
    clearEntries(disk, ebr);
    const empty = i > 0 && rand() < 0.1;
    const swapSlots = rand() < 0.15;
    const entries = [];
    if (!empty) {
      entries.push({ slot: swapSlots ? 1 : 0, type: pick(rand, DATA_TYPES), firstLba: l.start - ebr, sectors: l.end - l.start });
      volumes.push([5 + volumes.length, l.start * 512, (l.end - l.start) * 512]);
    }
    const next = ebrs[i + 1];
    if (next !== undefined) {
      entries.push({ slot: swapSlots ? 0 : 1, type: linkType, firstLba: next - ext.start, sectors: 1 });
    }
    putMbrEntries(disk, ebr, entries);
    structures.push(sectorRange(ebr, 512));
  }
  endChain(rand, disk, ext, ebrs, used, structures);
  return volumes;
}

/** Sometimes links the last EBR to a sector that is no EBR: the chain ends there. */
function endChain(rand: Rand, disk: Uint8Array, ext: Range, ebrs: number[], used: Set<number>, structures: Range[]): void {
  const last = ebrs[ebrs.length - 1];
  if (last === undefined || rand() >= 0.2) return;
  const end = randInt(rand, ext.start + 1, ext.end);
  if (used.has(end)) return;
  const entries = view(disk);
  const slot = [0, 1, 2, 3].find((s) => disk[last * 512 + 446 + s * 16 + 4] === 0)!;
  const at = last * 512 + 446 + slot * 16;
  disk[at + 4] = 0x05;
  entries.setUint32(at + 8, end - ext.start, true);
  entries.setUint32(at + 12, 1, true);
  if (rand() < 0.5) disk.fill(0, end * 512, end * 512 + 512);
  else disk[end * 512 + 511] = 0;
  structures.push(sectorRange(end, 512));
}

/** One GPT header and its entry array, as the generator places them. */
interface GptCopyPlan {
  readonly myLba: number;
  readonly alternateLba: number;
  readonly entriesLba: number;
}

interface GptShape {
  readonly sectorBytes: number;
  readonly firstUsableLba: number;
  readonly lastUsableLba: number;
  readonly entryCount: number;
  readonly entrySizeBytes: number;
  readonly parts: readonly { index: number; firstLba: number; lastLba: number }[];
}

/** Writes one header (§5.3.2) and its entry array (§5.3.3). */
function putGptCopy(disk: Uint8Array, g: GptShape, c: GptCopyPlan): void {
  const s = g.sectorBytes;
  const arrayBytes = g.entryCount * g.entrySizeBytes;
  const array = disk.subarray(c.entriesLba * s, c.entriesLba * s + arrayBytes);
  array.fill(0);
  for (const p of g.parts) {
    const at = p.index * g.entrySizeBytes;
    putGuid(array, at, p.index % 3 === 0 ? ESP_GUID : LINUX_FS_GUID);
    putGuid(array, at + 16, `00000000-0000-0000-0000-${(p.index + 1).toString(16).padStart(12, '0')}`);
    view(array).setBigUint64(at + 32, BigInt(p.firstLba), true);
    view(array).setBigUint64(at + 40, BigInt(p.lastLba), true);
  }
  const h = disk.subarray(c.myLba * s, (c.myLba + 1) * s);
  h.fill(0);
  putAscii(h, 0, 'EFI PART');
  const v = view(h);
  v.setUint32(8, 0x00010000, true);
  v.setUint32(12, 92, true);
  v.setBigUint64(24, BigInt(c.myLba), true);
  v.setBigUint64(32, BigInt(c.alternateLba), true);
  v.setBigUint64(40, BigInt(g.firstUsableLba), true);
  v.setBigUint64(48, BigInt(g.lastUsableLba), true);
  putGuid(h, 56, '11111111-2222-3333-4444-555555555555');
  v.setBigUint64(72, BigInt(c.entriesLba), true);
  v.setUint32(80, g.entryCount, true);
  v.setUint32(84, g.entrySizeBytes, true);
  v.setUint32(88, crc32(array), true);
  v.setUint32(16, crc32(h.subarray(0, 92)), true);
}

/** A free run of `count` LBAs in [lo, hi) that overlaps none of `taken`, or undefined after a few tries. */
function placeRun(rand: Rand, lo: number, hi: number, count: number, taken: Range[]): number | undefined {
  for (let tries = 0; tries < 20; tries++) {
    const start = randInt(rand, lo, hi - count + 1);
    if (start < lo || start + count > hi) return undefined;
    if (taken.every((t) => start + count <= t.start || t.end <= start)) {
      taken.push({ start, end: start + count });
      return start;
    }
  }
  return undefined;
}

/**
 * A GPT disk (512- or 4096-byte blocks) whose entry arrays and backup header lie anywhere the
 * spec's checks allow: inside partitions too, the backup away from the last LBA (a disk grown
 * since). Sometimes the primary header or array, or the backup, is damaged.
 */
export function randomGptDisk(rand: Rand, seed: number): Generated | undefined {
  const s = rand() < 0.8 ? 512 : 4096;
  const lbas = s === 512 ? randInt(rand, 512, 4096) : randInt(rand, 96, 512);
  const disk = new Uint8Array(lbas * s);
  fillPattern(disk, seed);
  disk.fill(0, 0, 2 * s);
  const entrySizeBytes = pick(rand, [128, 256]);
  const entryCount = pick(rand, [4, 16, 128]);
  const arraySectors = Math.ceil((entryCount * entrySizeBytes) / s);
  const lastLba = lbas - 1;
  const firstUsableLba = randInt(rand, 2, lbas >> 3);
  const lastUsableLba = randInt(rand, lbas - (lbas >> 3), lbas - 1);
  const damage = pick(rand, ['none', 'none', 'none', 'primary header', 'primary array', 'backup'] as const);
  const alternateLba = damage === 'none' && rand() < 0.3 ? randInt(rand, 2, lastLba) : lastLba;
  const taken: Range[] = [{ start: 0, end: 2 }, { start: alternateLba, end: alternateLba + 1 }];
  const primaryEntries = placeRun(rand, 2, lbas, arraySectors, taken);
  const backupEntries = placeRun(rand, 2, lbas, arraySectors, taken);
  if (primaryEntries === undefined || backupEntries === undefined) return undefined;
  const indices = shuffle(rand, Array.from({ length: entryCount }, (_, i) => i));
  const runs = disjointRuns(rand, firstUsableLba, lastUsableLba + 1, randInt(rand, 1, Math.min(7, entryCount + 1)), 1);
  const parts = runs.map((r, i) => ({ index: indices[i]!, firstLba: r.start, lastLba: r.end - 1 }));
  const shape: GptShape = { sectorBytes: s, firstUsableLba, lastUsableLba, entryCount, entrySizeBytes, parts };
  putMbrEntries(disk, 0, [{ slot: 0, type: 0xee, firstLba: 1, sectors: Math.min(lastLba, 0xffffffff) }]);
  const primary = { myLba: 1, alternateLba, entriesLba: primaryEntries };
  const backup = { myLba: alternateLba, alternateLba: 1, entriesLba: backupEntries };
  putGptCopy(disk, shape, backup);
  putGptCopy(disk, shape, primary);
  const structures = [sectorRange(0, s), sectorRange(1, s), sectorRange(alternateLba, s)];
  if (damage !== 'primary header') structures.push(sectorRange(primaryEntries, s, arraySectors));
  if (damage !== 'backup') structures.push(sectorRange(backupEntries, s, arraySectors));
  if (damage === 'primary header') flip(disk, s + 60);
  if (damage === 'primary array') flip(disk, primaryEntries * s + entryCount * entrySizeBytes - 1);
  if (damage === 'backup') flip(disk, alternateLba * s + 60);
  const volumes = parts
    .map((p): [number, number, number] => [p.index + 1, p.firstLba * s, (p.lastLba - p.firstLba + 1) * s])
    .sort((a, b) => a[1] - b[1]);
  return { disk, expected: { table: 'gpt', volumes, structures } };
}
