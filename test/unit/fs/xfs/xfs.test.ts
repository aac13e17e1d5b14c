import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../../src/disk/extent-set.js';
import { isSparsifyError } from '../../../../src/errors.js';
import { parseXfsAgf, parseXfsAgfl } from '../../../../src/fs/xfs/ag.js';
import { allocBtreeShape, parseXfsAllocBlock } from '../../../../src/fs/xfs/btree.js';
import { XfsDamage } from '../../../../src/fs/xfs/common.js';
import { logBlockCycle, parseLogRecordHeader } from '../../../../src/fs/xfs/log.js';
import { parseXfsGeometry } from '../../../../src/fs/xfs/superblock.js';
import { readXfsFreeMap } from '../../../../src/fs/xfs/free-map.js';
import { probeVolume } from '../../../../src/fs/probe.js';
import type { FreeMap } from '../../../../src/fs/types.js';
import { prng } from '../../../helpers/copy-fakes.js';
import {
  buildXfs,
  DEFAULT_SPEC,
  imageReader,
  putCleanLog,
  putClearedLog,
  putCrc,
  putLogRecord,
  stamp,
  type XfsLayout,
  type XfsSpec,
} from './fixtures.js';

const V4: XfsSpec = { ...DEFAULT_SPEC, version: 4 };
const SECTORS_4K: XfsSpec = {
  ...DEFAULT_SPEC,
  blockSize: 4096,
  sectorSize: 4096,
  leafRecs: 100,
  log: { ...DEFAULT_SPEC.log, blocks: 4, headBB: 32 },
};
/** One AG of 2^16 blocks (only 300 present): deep enough for a three-level bnobt. */
const DEEP: XfsSpec = {
  ...DEFAULT_SPEC,
  agCount: 1,
  agBlocks: 65536,
  lastAgBlocks: 300,
  free: [[[40, 1], [42, 1], [44, 2], [50, 5], [60, 1], [70, 30], [150, 150]]],
  leafRecs: 2,
  nodeRecs: 2,
  log: { agno: 0, agbno: 20, blocks: 16, headBB: 32, cycle: 1 },
};

/** XORs one byte: the tests' way of damaging a structure. */
function flip(bytes: Uint8Array, offset: number, mask = 0x01): void {
  bytes[offset] = (bytes[offset] ?? 0) ^ mask;
}

/** A log larger than the kernel's search windows (4096 blocks), in one AG of 8192 1 KiB blocks. */
const LOG_SPEC: XfsSpec = {
  ...DEFAULT_SPEC,
  agCount: 1,
  agBlocks: 8192,
  lastAgBlocks: 3000,
  free: [[[2700, 300]]],
  log: { agno: 0, agbno: 100, blocks: 2560, headBB: 1000, cycle: 3 },
};
const LOG_BB = 5120;

const view = (l: XfsLayout): DataView => new DataView(l.bytes.buffer);
const sector = (l: XfsLayout, agno: number, n: number): Uint8Array =>
  l.bytes.subarray(l.offsetOf(agno, 0) + n * l.spec.sectorSize, l.offsetOf(agno, 0) + (n + 1) * l.spec.sectorSize);
const block = (l: XfsLayout, agno: number, agbno: number): Uint8Array =>
  l.bytes.subarray(l.offsetOf(agno, agbno), l.offsetOf(agno, agbno) + l.spec.blockSize);
const rootOf = (l: XfsLayout, agno: number): number => l.treeBlocks[agno]!.at(-1)![0]!;

function expectedFree(l: XfsLayout): ExtentSet {
  return ExtentSet.from(
    l.spec.free.flatMap((extents, agno) =>
      extents.map(([a, n]) => ({ start: l.offsetOf(agno, a), end: l.offsetOf(agno, a) + n * l.spec.blockSize })),
    ),
  );
}

async function mapOf(l: XfsLayout): Promise<FreeMap> {
  return readXfsFreeMap(imageReader(l.bytes));
}

/** What the probe says of the volume's log: dirty (needs recovery) or not; the type must be xfs. */
async function dirtyOf(l: XfsLayout): Promise<boolean> {
  const fs = await probeVolume(imageReader(l.bytes));
  expect(fs.type).toBe('xfs');
  return fs.dirty === true;
}

async function reasonOf(l: XfsLayout): Promise<string> {
  const map = await mapOf(l);
  if (map.trusted) throw new Error('expected an untrusted map');
  return map.reason;
}

describe('readXfsFreeMap on synthetic volumes', () => {
  it.each([
    ['v5', DEFAULT_SPEC],
    ['v4', V4],
    ['v5 three-level bnobt', DEEP],
    ['v4 three-level bnobt', { ...DEEP, version: 4 } as XfsSpec],
    ['v5 4 KiB sectors', SECTORS_4K],
  ])('%s: the bnobt extents, as bytes', async (_name, spec) => {
    const l = buildXfs(spec as XfsSpec);
    const map = await mapOf(l);
    expect(map).toMatchObject({ trusted: true, unitBytes: l.spec.blockSize });
    if (!map.trusted) return;
    expect(map.free.ranges).toEqual(expectedFree(l).ranges);
    expect(map.counterFreeBytes).toBe(expectedFree(l).totalBytes);
    expect(map.detail).toMatch(new RegExp(`^xfs v${l.spec.version}, ${l.spec.agCount} AGs`));
  });

  it('an AG with no free space has an empty root leaf', async () => {
    const l = buildXfs({ ...DEFAULT_SPEC, free: [[], ...DEFAULT_SPEC.free.slice(1)] });
    const map = await mapOf(l);
    expect(map.trusted).toBe(true);
  });

  it('reads only a few blocks of a large, empty-ish filesystem', async () => {
    const reader = imageReader(buildXfs().bytes);
    await readXfsFreeMap(reader);
    expect(reader.reads).toBeLessThan(60);
  });
});

describe('decoders', () => {
  const l = buildXfs();
  const g = parseXfsGeometry(l.bytes.subarray(0, 512));
  const shape = allocBtreeShape(g);

  it('superblock geometry', () => {
    expect(g).toMatchObject({ version: 5, blockSizeBytes: 1024, agCount: 3, agBlocks: 256, dataBlocks: 712, lazyCount: true });
    expect(shape).toMatchObject({ headerBytes: 56, leafMaxRecs: 121, nodeMaxRecs: 80, maxLevels: 2 });
  });

  it('AGF and AGFL', () => {
    const agf = parseXfsAgf(sector(l, 1, 1), g, 1, shape.maxLevels);
    expect(agf).toMatchObject({ lengthBlocks: 256, freeBlocks: 105, longestFree: 100, flCount: 3, bnoLevels: 2 });
    expect(parseXfsAgfl(sector(l, 1, 3), g, 1, agf)).toEqual(l.agflBlocks[1]);
    expect(() => parseXfsAgf(sector(l, 1, 1), g, 2, shape.maxLevels)).toThrow('xfs AG 2 AGF: sequence number 1');
  });

  it('the free list wraps around its slots', () => {
    const agf = parseXfsAgf(sector(l, 0, 1), g, 0, shape.maxLevels);
    const agflBytes = sector(l, 0, 3).slice();
    const slots = (512 - 36) / 4;
    new DataView(agflBytes.buffer).setUint32(36 + (slots - 1) * 4, 9);
    putCrc(agflBytes, 32);
    expect(parseXfsAgfl(agflBytes, g, 0, { ...agf, flFirst: slots - 1, flLast: 1, flCount: 3 })).toEqual([9, 5, 6]);
    expect(() => parseXfsAgfl(agflBytes, g, 0, { ...agf, flFirst: slots - 1, flLast: 1, flCount: 2 })).toThrow(/needs a reset/);
  });

  it('bnobt leaf and node blocks', () => {
    const [leaf0] = l.treeBlocks[2]![0]!;
    const leaf = parseXfsAllocBlock(block(l, 2, leaf0!), g, shape, { agno: 2, agbno: leaf0!, agLengthBlocks: 200, level: 0 });
    expect(leaf.records).toEqual([
      { startBlock: 30, blockCount: 1 },
      { startBlock: 32, blockCount: 1 },
    ]);
    const root = parseXfsAllocBlock(block(l, 2, rootOf(l, 2)), g, shape, { agno: 2, agbno: rootOf(l, 2), agLengthBlocks: 200, level: 1 });
    expect(root.children).toEqual(l.treeBlocks[2]![0]);
    const wrongLevel = { agno: 2, agbno: rootOf(l, 2), agLengthBlocks: 200, level: 0 };
    const rootBlock = block(l, 2, rootOf(l, 2));
    expect(() => parseXfsAllocBlock(rootBlock, g, shape, wrongLevel)).toThrow(`xfs AG 2 bnobt block ${rootOf(l, 2)}: level 1`);
    const elsewhere = { agno: 2, agbno: leaf0! + 1, agLengthBlocks: 200, level: 0 };
    expect(() => parseXfsAllocBlock(block(l, 2, leaf0!), g, shape, elsewhere)).toThrow(/is not its own address/);
  });

  it('log record header and block cycles', () => {
    const log = buildXfs(LOG_SPEC);
    const header = log.bytes.subarray(log.logOffset(998), log.logOffset(999));
    expect(parseLogRecordHeader(header)).toMatchObject({ cycle: 3, version: 2, lenBytes: 512, lsnCycle: 3, lsnBlock: 998, numLogOps: 1 });
    expect(logBlockCycle(header)).toBe(3);
    expect(logBlockCycle(log.bytes, log.logOffset(999))).toBe(3);
    expect(logBlockCycle(log.bytes, log.logOffset(1000))).toBe(2);
    const bad = header.slice();
    new DataView(bad.buffer).setUint32(8, 9);
    expect(parseLogRecordHeader(bad)).toBe('version 9');
  });

  it('damage is a SparsifyError BAD_IMAGE naming the structure', () => {
    const bad = sector(l, 1, 1).slice();
    flip(bad, 60);
    let caught: unknown;
    try {
      parseXfsAgf(bad, g, 1, shape.maxLevels);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(XfsDamage);
    expect(isSparsifyError(caught, 'BAD_IMAGE')).toBe(true);
    expect((caught as Error).message).toBe('xfs AG 1 AGF: CRC mismatch');
  });
});

describe('not an XFS volume: BAD_IMAGE', () => {
  it.each([
    ['bad magic', (l: XfsLayout) => view(l).setUint32(0, 0x58465343)],
    ['agblklog', (l: XfsLayout) => (l.bytes[124] = 9)],
    ['dblocks beyond the AGs', (l: XfsLayout) => view(l).setBigUint64(8, 5000n)],
  ])('%s', async (_name, hurt) => {
    const l = buildXfs(V4);
    hurt(l);
    await expect(mapOf(l)).rejects.toMatchObject({ code: 'BAD_IMAGE' });
  });

  it('a volume too short for a superblock', async () => {
    await expect(readXfsFreeMap(imageReader(new Uint8Array(100)))).rejects.toMatchObject({ code: 'BAD_IMAGE' });
  });
});

/** Sets a v5 superblock field and re-seals the CRC, so that the check behind the CRC is what fires. */
function setSb32(l: XfsLayout, offset: number, value: number): void {
  view(l).setUint32(offset, value);
  putCrc(l.bytes.subarray(0, l.spec.sectorSize), 224);
}

/** Sets a field of AG `agno`'s AGF (v4: no CRC to re-seal). */
function setAgf32(l: XfsLayout, agno: number, offset: number, value: number): void {
  view(l).setUint32(l.offsetOf(agno, 0) + l.spec.sectorSize + offset, value);
}

describe('untrusted', () => {
  const cases: [string, XfsSpec, (l: XfsLayout) => void, RegExp][] = [
    ['superblock CRC', DEFAULT_SPEC, (l) => flip(l.bytes, 200), /superblock: CRC mismatch/],
    ['sb_inprogress', V4, (l) => (l.bytes[126] = 1), /sb_inprogress/],
    ['realtime device', V4, (l) => view(l).setBigUint64(16, 10n), /realtime/],
    ['unknown incompat feature', DEFAULT_SPEC, (l) => setSb32(l, 216, 0xb | (1 << 20)), /incompatible features .*0x100000/],
    ['NEEDSREPAIR', DEFAULT_SPEC, (l) => setSb32(l, 216, 0xb | 0x10), /needs xfs_repair/],
    ['v4 shared superblock bit', V4, (l) => view(l).setUint16(100, 0xb4a4 | 0x200), /shared-superblock/],
    ['external log', V4, (l) => view(l).setBigUint64(48, 0n), /external log/],
    ['filesystem larger than the volume', V4, (l) => view(l).setBigUint64(8, 713n), /larger than its/],
    ['AGF CRC', DEFAULT_SPEC, (l) => flip(sector(l, 2, 1), 56), /^xfs AG 2 AGF: CRC mismatch$/],
    ['AGF freeblks', V4, (l) => setAgf32(l, 1, 52, 104), /^xfs AG 1: the bnobt holds 105 free blocks but agf_freeblks says 104$/],
    ['AGF longest', V4, (l) => setAgf32(l, 0, 56, 19), /AG 0: the longest free extent/],
    ['bnobt CRC', DEFAULT_SPEC, (l) => flip(block(l, 2, l.treeBlocks[2]![0]![1]!), 60), /^xfs AG 2 bnobt block \d+: CRC mismatch$/],
  ];
  it.each(cases)('%s', async (_name, spec, hurt, reason) => {
    const l = buildXfs(spec);
    hurt(l);
    expect(await reasonOf(l)).toMatch(reason);
  });

  it('a loop: a node points twice to the same leaf', async () => {
    const l = buildXfs(V4);
    const root = block(l, 2, rootOf(l, 2));
    const v = new DataView(root.buffer, root.byteOffset);
    const ptrs = 16 + 84 * 8;
    v.setUint32(ptrs + 4, v.getUint32(ptrs));
    expect(await reasonOf(l)).toMatch(/^xfs AG 2 bnobt block \d+: child \d+ is reached twice \(a loop\)$/);
  });

  it('a loop: a leaf pointer back to the root', async () => {
    const l = buildXfs(V4);
    const root = block(l, 2, rootOf(l, 2));
    new DataView(root.buffer, root.byteOffset).setUint32(16 + 84 * 8 + 4, rootOf(l, 2));
    expect(await reasonOf(l)).toMatch(/reached twice/);
  });

  it('sibling pointers that do not chain', async () => {
    const l = buildXfs(V4);
    const leaf = block(l, 2, l.treeBlocks[2]![0]![1]!);
    new DataView(leaf.buffer, leaf.byteOffset).setUint32(12, l.treeBlocks[2]![0]![4]!);
    expect(await reasonOf(l)).toMatch(/sibling pointers .* disagree/);
  });

  it('a pointer outside the AG', async () => {
    const l = buildXfs(V4);
    const root = block(l, 2, rootOf(l, 2));
    new DataView(root.buffer, root.byteOffset).setUint32(16 + 84 * 8, 200);
    expect(await reasonOf(l)).toMatch(/pointer 0 \(200\) lies outside the AG/);
  });

  it('a free extent over an AGFL block, a tree block or the log', async () => {
    // Replaces the AG's first free extent, so that the tree keeps its shape and places.
    const over = async (agno: number, start: number): Promise<string> =>
      reasonOf(buildXfs({ ...V4, free: V4.free.map((e, i) => (i === agno ? [[start, 1] as const, ...e.slice(1)] : e)) }));
    expect(await over(0, 5)).toMatch(/AG 0 AGFL: block 5 is also in the bnobt/);
    const withTree = await over(0, 2);
    expect(withTree).toMatch(/AG 0 bnobt block 2: the block is listed as free/);
    expect(await over(1, 25)).toMatch(/AG 1: the bnobt lists part of the internal log as free/);
  });

  it('without lazy counters sb_fdblocks must agree; with them the AGFs win', async () => {
    const strict = buildXfs({ ...V4, lazyCount: false });
    view(strict).setBigUint64(144, 1n);
    expect(await reasonOf(strict)).toMatch(/sb_fdblocks 1 but the AGFs count/);
    const lazy = buildXfs(V4);
    view(lazy).setBigUint64(144, 1n);
    expect(await mapOf(lazy)).toMatchObject({ trusted: true, detail: expect.stringMatching(/lazy counters: sb_fdblocks 1/) });
  });
});


describe('log state', () => {
  const withLog = (headBB: number, cycle = 3, spec = LOG_SPEC): XfsLayout => {
    const l = buildXfs(spec);
    putCleanLog(l, { ...l.spec.log, headBB, cycle });
    return l;
  };
  const cycleOf = (headBB: number, cycle = 3) => (bb: number) => (bb < headBB ? cycle : cycle - 1);

  it.each([
    ['head mid-ring', 1000, 3],
    ['the record wraps past the end of the ring', 1, 3],
    ['the record ends at the end of the ring', LOG_BB, 3],
    ['first pass, rest of the ring zeroed (mkfs)', 1000, 1],
    ['first pass, head near the start', 2, 1],
  ])('clean: %s', async (_name, headBB, cycle) => {
    expect(await mapOf(withLog(headBB, cycle))).toMatchObject({ trusted: true });
    expect(await dirtyOf(withLog(headBB, cycle))).toBe(false);
  });

  it('clean: a tiny ring, smaller than the search windows', async () => {
    expect(await mapOf(withLog(10, 3, DEFAULT_SPEC))).toMatchObject({ trusted: true });
  });

  it('clean: reformatted by xfs_repair or xfs_admin (zeros, then records of the previous cycle)', async () => {
    const l = buildXfs(LOG_SPEC);
    putClearedLog(l, 5);
    expect(await mapOf(l)).toMatchObject({ trusted: true });
  });

  it('dirty: the last record is a transaction, not an unmount record', async () => {
    const l = withLog(1000);
    putLogRecord(l, 998, LOG_BB, cycleOf(1000), { ops: 2, flags: 0x02 });
    expect(await reasonOf(l)).toMatch(/log is dirty/);
    expect(await dirtyOf(l)).toBe(true);
  });

  it('dirty: transactions were written after the unmount record', async () => {
    const l = withLog(1000);
    putLogRecord(l, 1000, LOG_BB, cycleOf(1004), { spanBB: 4, ops: 2, flags: 0x02 });
    expect(await reasonOf(l)).toMatch(/log is dirty/);
    expect(await dirtyOf(l)).toBe(true);
  });

  it('dirty: a hole behind the head (a write overtaken by a later one)', async () => {
    const l = withLog(1000);
    stamp(l, 700, 2);
    expect(await reasonOf(l)).toMatch(/log is dirty/);
    expect(await dirtyOf(l)).toBe(true);
  });

  it('dirty: the last write is torn (the head falls inside a record)', async () => {
    const l = withLog(1000);
    putLogRecord(l, 998, LOG_BB, cycleOf(1004), { spanBB: 6, ops: 1, flags: 0x20 });
    stamp(l, 1002, 2);
    stamp(l, 1003, 2);
    expect(await reasonOf(l)).toMatch(/log is dirty/);
    expect(await dirtyOf(l)).toBe(true);
  });

  it('a torn unmount record fails its CRC', async () => {
    const l = withLog(1000);
    flip(l.bytes, l.logOffset(999) + 20);
    expect(await reasonOf(l)).toMatch(/unmount record fails its CRC/);
    expect(await dirtyOf(l)).toBe(true);
  });

  it('a zero record CRC counts as valid (mkfs writes one)', async () => {
    const l = withLog(1000);
    putLogRecord(l, 998, LOG_BB, cycleOf(1000), { crc: false });
    flip(l.bytes, l.logOffset(999) + 20);
    expect((await mapOf(l)).trusted).toBe(true);
  });

  it('a zeroed log, and cycles that make no ring', async () => {
    const zeroed = buildXfs(LOG_SPEC);
    zeroed.bytes.fill(0, zeroed.logOffset(0), zeroed.logOffset(LOG_BB));
    expect(await reasonOf(zeroed)).toMatch(/entirely zeroed/);
    const odd = withLog(1000);
    stamp(odd, LOG_BB - 1, 7);
    expect(await reasonOf(odd)).toMatch(/do not make one ring/);
    // Not known to need recovery: no typed state, and the map reader refuses with its reason.
    expect(await dirtyOf(zeroed)).toBe(false);
    expect(await dirtyOf(odd)).toBe(false);
  });

  it('a record header from another filesystem', async () => {
    const l = withLog(1000);
    flip(l.bytes, l.logOffset(998) + 310);
    expect(await reasonOf(l)).toMatch(/another filesystem/);
    expect(await dirtyOf(l)).toBe(false);
  });
});

/** A structure worth mutating: its bytes, the parts that carry meaning, and its CRC field (v5) for re-sealing. */
interface Region {
  readonly at: number;
  readonly length: number;
  readonly hot: readonly (readonly [offset: number, length: number])[];
  readonly crc?: number;
}

function regions(l: XfsLayout): Region[] {
  const s = l.spec;
  const v5 = s.version === 5;
  const crc = (offset: number): { crc?: number } => (v5 ? { crc: offset } : {});
  const hdr = v5 ? 56 : 16;
  const nodePtrs = hdr + Math.floor((s.blockSize - hdr) / 12) * 8;
  const out: Region[] = [{ at: 0, length: s.sectorSize, hot: [[0, 264]], ...crc(224) }];
  for (let agno = 0; agno < s.agCount; agno++) {
    out.push({ at: l.offsetOf(agno, 0) + s.sectorSize, length: s.sectorSize, hot: [[0, 96]], ...crc(216) });
    out.push({ at: l.offsetOf(agno, 0) + 3 * s.sectorSize, length: s.sectorSize, hot: [[0, 64]], ...crc(32) });
    for (const agbno of l.treeBlocks[agno]!.flat()) {
      out.push({ at: l.offsetOf(agno, agbno), length: s.blockSize, hot: [[0, hdr + 64], [nodePtrs, 32]], ...crc(52) });
    }
  }
  const sizeBB = (s.log.blocks * s.blockSize) / 512;
  const recordBB = (s.log.headBB - 2 + sizeBB) % sizeBB;
  const cycles = Array.from({ length: sizeBB }, (_, bb) => [bb * 512, 8] as const);
  out.push({ at: l.logOffset(0), length: sizeBB * 512, hot: [...cycles, [recordBB * 512, 328], [((recordBB + 1) % sizeBB) * 512, 16]] });
  return out;
}

const INTERESTING = [0, 1, 2, 0xff, 0xffff, 0xffffffff, 0x7fffffff, 64, 200, 255, 256, 65536];

function mutate(bytes: Uint8Array, l: XfsLayout, rnd: () => number): void {
  const all = regions(l);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;
  const touched = new Set<Region>();
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  for (let i = 1 + Math.floor(rnd() * 4); i > 0; i--) {
    const r = pick(all);
    touched.add(r);
    const [offset, length] = pick(r.hot);
    const at = r.at + offset + Math.floor((rnd() * length) / 4) * 4;
    if (rnd() < 0.5) bytes[at + Math.floor(rnd() * 4)] = Math.floor(rnd() * 256);
    else v.setUint32(at, pick(INTERESTING));
  }
  if (rnd() < 0.8) for (const r of touched) if (r.crc !== undefined) putCrc(bytes.subarray(r.at, r.at + r.length), r.crc);
}

/** The blocks a trusted map must never call free, whatever was mutated: AG headers, tree, AGFL, log. */
function metadata(l: XfsLayout): ExtentSet {
  const s = l.spec;
  const blocks = (agno: number, agbno: number, n = 1) => ({ start: l.offsetOf(agno, agbno), end: l.offsetOf(agno, agbno + n) });
  return ExtentSet.from([
    ...Array.from({ length: s.agCount }, (_, agno) => blocks(agno, 0, 2)),
    ...l.treeBlocks.flatMap((levels, agno) => levels.flat().map((b) => blocks(agno, b))),
    ...l.agflBlocks.flatMap((list, agno) => list.map((b) => blocks(agno, b))),
    blocks(s.log.agno, s.log.agbno, s.log.blocks),
  ]);
}

describe('fuzz: mutated metadata gives a FreeMap or a SparsifyError, never another exception or a hang', () => {
  it.each([
    ['v5', DEFAULT_SPEC, 1],
    ['v4', V4, 2],
    ['v5 deep', DEEP, 3],
    ['v4 deep', { ...DEEP, version: 4 } as XfsSpec, 4],
  ])('%s', async (_name, spec, seed) => {
    const base = buildXfs(spec as XfsSpec);
    const rnd = prng(seed);
    const used = metadata(base);
    const outcomes = { trusted: 0, untrusted: 0, thrown: 0 };
    for (let run = 0; run < 1000; run++) {
      const bytes = base.bytes.slice();
      mutate(bytes, base, rnd);
      try {
        const map = await readXfsFreeMap(imageReader(bytes));
        outcomes[map.trusted ? 'trusted' : 'untrusted']++;
        if (map.trusted) {
          expect(map.free.ranges.every((r) => r.start >= 0 && r.end <= bytes.length)).toBe(true);
          expect(map.free.intersect(used).isEmpty, `run ${run}`).toBe(true);
        }
      } catch (err) {
        if (!isSparsifyError(err)) throw new Error(`run ${run} (seed ${seed}) threw ${String(err)}`, { cause: err });
        outcomes.thrown++;
      }
      // The probe reads the log too: it finds the state or not, but never fails the run.
      await expect(probeVolume(imageReader(bytes)), `run ${run}`).resolves.toHaveProperty('type');
    }
    expect(outcomes.untrusted).toBeGreaterThan(300);
  });
});
