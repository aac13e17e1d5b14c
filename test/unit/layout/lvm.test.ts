import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { SparsifyError } from '../../../src/errors.js';
import { LvmConfigError, parseLvmConfig, type LvmConfigSection } from '../../../src/layout/lvm-config.js';
import { lvmCrc } from '../../../src/layout/lvm-mda.js';
import { lvmStructureRanges, parseLvmPvLabel } from '../../../src/layout/lvm-pv.js';
import { readLvm, type LvmResult } from '../../../src/layout/lvm.js';
import { flip, memReader, view } from './fixtures.js';
import { prng } from '../../helpers/copy-fakes.js';

import {
  PV_NAME,
  PV_UUID,
  OTHER_UUID,
  MDA_OFFSET,
  MDA_SIZE,
  PE_START,
  EXTENT,
  PE_COUNT,
  PV_SIZE,
  labelSector,
  putMetadata,
  makePv,
  lv,
  linear,
  vgText,
} from './lvm-fixtures.js';

async function read(pv: Uint8Array): Promise<LvmResult> {
  return readLvm(memReader(pv), PV_NAME);
}

const byte = (pe: number) => PE_START + pe * EXTENT;
const extents = (from: number, to: number) => ({ start: byte(from), end: byte(to) });

async function layoutError(pv: Uint8Array): Promise<SparsifyError> {
  const err = await read(pv).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SparsifyError);
  expect((err as SparsifyError).code).toBe('BAD_LAYOUT');
  return err as SparsifyError;
}

describe('LVM2 config syntax', () => {
  const entries = (s: LvmConfigSection) => Object.fromEntries(s.entries);

  it('parses sections, assignments, arrays and comments', () => {
    const root = parseLvmConfig('a = 1 # one\nb { c = "x" d = [1, "two", 3.5] e = [] f { } }\ng=-4');
    expect(root.entries.get('a')).toBe(1);
    expect(root.entries.get('g')).toBe(-4);
    const b = root.entries.get('b') as LvmConfigSection;
    expect(entries(b)).toMatchObject({ c: 'x', d: [1, 'two', 3.5], e: [] });
    expect((b.entries.get('f') as LvmConfigSection).entries.size).toBe(0);
  });

  it('unescapes quotes and backslashes in strings, and keeps # inside them', () => {
    const root = parseLvmConfig('s = "say \\"hi\\" \\\\ # not a comment"\nt = \'single\'');
    expect(root.entries.get('s')).toBe('say "hi" \\ # not a comment');
    expect(root.entries.get('t')).toBe('single');
  });

  it('keeps the order of entries, and names with dots, dashes and plus signs', () => {
    const root = parseLvmConfig('lv-1.a+b { }\nlv0 { }\n0lv { }');
    expect([...root.entries.keys()]).toEqual(['lv-1.a+b', 'lv0', '0lv']);
  });

  it.each([
    ['a = ', 'expected a value'],
    ['a { b = 1', "missing '}'"],
    ['a = 1 }', "unexpected '}'"],
    ['a = "open', 'unterminated string'],
    ['a = [1 2]', "expected ',' or ']'"],
    ['a = [1, [2]]', 'expected a value'],
    ['a = 1 a = 2', '"a" is defined twice'],
    ['a = word', '"word" is not a value'],
    ['a = 99999999999999999999', 'out of range'],
    ['a b', "expected '='"],
    ['a = 1\n\n= 2', 'line 3: expected a name'],
    ['a = "x\\', 'unterminated string'],
  ])('rejects %j', (text, message) => {
    expect(() => parseLvmConfig(text)).toThrow(LvmConfigError);
    expect(() => parseLvmConfig(text)).toThrow(message);
  });

  it('limits nesting depth and size without overflowing the stack', () => {
    expect(() => parseLvmConfig('a {'.repeat(100_000))).toThrow('nest deeper than 16');
    expect(() => parseLvmConfig(`${'a {'.repeat(16)}${'}'.repeat(16)}`)).not.toThrow();
    expect(() => parseLvmConfig('a = 1', { maxDepth: 4, maxChars: 3 })).toThrow('over the 3-byte limit');
  });
});

/** The mda_header sector of /dev/sda2 after `guestfish -N bootrootlv` (lvm2 2.03.16); the rest is zeros. */
const REAL_MDA_HEADER_HEX =
  'cff5dbce204c564d3220785b35412572304e2a3e01000000001000000000000000f00f000000000000060000000000000e0400000000000048823c53';

describe('lvm2 checksum', () => {
  it('matches the header checksum lvm2 wrote (CRC-32 seeded with 0xf597a6cf, no final inversion)', () => {
    const sector = new Uint8Array(512);
    sector.set(Buffer.from(REAL_MDA_HEADER_HEX, 'hex'));
    expect(lvmCrc(sector.subarray(4))).toBe(view(sector).getUint32(0, true));
    expect(lvmCrc(sector.subarray(4, 200), sector.subarray(200))).toBe(0xcedbf5cf);
  });
});

describe('readLvm on synthetic PVs', () => {
  it('maps a linear LV to its bytes and leaves the other extents free', async () => {
    const r = await read(makePv(vgText([linear('root', 4, 10)]), {}));
    expect(r.vgName).toBe('VG');
    expect(r.extentSizeBytes).toBe(EXTENT);
    expect(r.volumes).toEqual([{ name: '/dev/VG/root', offsetBytes: byte(4), sizeBytes: 10 * EXTENT, kind: 'logical-volume' }]);
    expect(r.unhandled).toEqual([]);
    expect(r.freeOnPv.ranges).toEqual([extents(0, 4), extents(14, PE_COUNT)]);
    expect(r.notes).toEqual([]);
    expect(r.pvCount).toBe(1);
    expect(r.extentArea).toEqual({ startBytes: PE_START, endBytes: PE_START + PE_COUNT * EXTENT });
    expect(r.usedIsComplete).toBe(true);
  });

  it('marks an LV without the WRITE status read-only (lvchange -p r), as virt-sparsify skips it', async () => {
    const readOnly = linear('ro', 20, 4).replace('"READ", "WRITE", "VISIBLE"', '"READ", "VISIBLE"');
    const r = await read(makePv(vgText([linear('root', 4, 10), readOnly])));
    expect(r.volumes.map((v) => [v.name, v.readOnly])).toEqual([
      ['/dev/VG/root', undefined],
      ['/dev/VG/ro', true],
    ]);
  });

  it('reports the label sector and each whole metadata area as structures, clipped to the PV', async () => {
    const r = await read(makePv(vgText([linear('root', 4, 10)])));
    expect(r.structures.ranges).toEqual([{ start: 512, end: 1024 }, { start: MDA_OFFSET, end: MDA_OFFSET + MDA_SIZE }]);
    const orphan = await read(makePv(undefined));
    expect(orphan.structures.ranges).toEqual(r.structures.ranges);
    // A damaged label's areas may run past the PV: only the PV's own bytes are protected.
    const label = parseLvmPvLabel(labelSector([{ offset: MDA_OFFSET, size: MDA_SIZE }, { offset: PV_SIZE - 4096, size: 8192 }]), 1)!;
    expect(lvmStructureRanges(label, PV_SIZE).ranges).toEqual([
      { start: 512, end: 1024 },
      { start: MDA_OFFSET, end: MDA_OFFSET + MDA_SIZE },
      { start: PV_SIZE - 4096, end: PV_SIZE },
    ]);
  });

  it('joins segments that follow each other on the PV, and refuses a gap between them', async () => {
    const joined = lv('a', [{ count: 3, stripes: [['pv0', 0]] }, { count: 2, stripes: [['pv0', 3]] }]);
    const gapped = lv('b', [{ count: 2, stripes: [['pv0', 10]] }, { count: 2, stripes: [['pv0', 20]] }]);
    const r = await read(makePv(vgText([joined, gapped])));
    expect(r.volumes).toEqual([{ name: '/dev/VG/a', offsetBytes: byte(0), sizeBytes: 5 * EXTENT, kind: 'logical-volume' }]);
    expect(r.unhandled).toEqual([{ name: 'b', reason: 'segments are not contiguous on the PV' }]);
    expect(r.freeOnPv.ranges).toEqual([extents(5, 10), extents(12, 20), extents(22, PE_COUNT)]);
  });

  it('reports a striped LV and keeps its extents on both PVs in use', async () => {
    const striped = lv('s', [{ count: 8, stripes: [['pv0', 0], ['pv1', 0]] }]);
    const r = await read(makePv(vgText([striped], { pv1: true })));
    expect(r.volumes).toEqual([]);
    expect(r.unhandled).toEqual([{ name: 's', reason: 'striped over 2 stripes' }]);
    expect(r.freeOnPv.ranges).toEqual([extents(4, PE_COUNT)]);
  });

  it('reports a thin pool and its thin LV, hides their sub-LVs, and frees none of their extents', async () => {
    const r = await read(makePv(vgText([
      lv('pool', [{ count: 4, type: 'thin-pool', extra: 'metadata = "pool_tmeta"\n pool = "pool_tdata"\n chunk_size = 128' }]),
      lv('thin1', [{ count: 32, type: 'thin', extra: 'thin_pool = "pool"\n device_id = 1' }]),
      lv('pool_tmeta', [{ count: 1, stripes: [['pv0', 0]] }], false),
      lv('pool_tdata', [{ count: 4, stripes: [['pv0', 1]] }], false),
      lv('lvol0_pmspare', [{ count: 1, stripes: [['pv0', 5]] }], false),
    ])));
    expect(r.volumes).toEqual([]);
    expect(r.unhandled).toEqual([
      { name: 'pool', reason: 'segment type thin-pool' },
      { name: 'thin1', reason: 'segment type thin' },
    ]);
    expect(r.freeOnPv.ranges).toEqual([extents(6, PE_COUNT)]);
  });

  it('reports a snapshot origin and its exception store by the names lvs shows', async () => {
    const r = await read(makePv(vgText([
      linear('orig', 0, 4),
      lv('snap', [{ count: 2, stripes: [['pv0', 4]] }], false),
      lv('snapshot0', [{ count: 4, type: 'snapshot', extra: 'chunk_size = 8\n origin = "orig"\n cow_store = "snap"' }]),
      linear('other', 6, 2),
    ])));
    expect(r.volumes.map((v) => v.name)).toEqual(['/dev/VG/other']);
    expect(r.unhandled).toEqual([
      { name: 'orig', reason: 'snapshot origin' },
      { name: 'snap', reason: 'snapshot of orig' },
    ]);
    expect(r.freeOnPv.ranges).toEqual([extents(8, PE_COUNT)]);
  });

  it('reports an LV that spans PVs, and leaves an LV wholly on the other PV to that PV', async () => {
    const span = lv('span', [{ count: 2, stripes: [['pv0', 0]] }, { count: 2, stripes: [['pv1', 0]] }]);
    const r = await read(makePv(vgText([span, linear('there', 2, 50, 'pv1'), linear('here', 2, 3)], { pv1: true })));
    expect(r.volumes.map((v) => v.name)).toEqual(['/dev/VG/here']);
    expect(r.unhandled).toEqual([{ name: 'span', reason: 'spans PVs' }]);
    expect(r.freeOnPv.ranges).toEqual([extents(5, PE_COUNT)]);
  });

  it('reports raid and mirror LVs and an LV stacked on another LV (pvmove)', async () => {
    const r = await read(makePv(vgText([
      lv('r1', [{ count: 2, type: 'raid1', extra: 'device_count = 2\n raids = ["r1_rmeta_0", "r1_rimage_0"]' }]),
      lv('r1_rmeta_0', [{ count: 1, stripes: [['pv0', 0]] }], false),
      lv('r1_rimage_0', [{ count: 2, stripes: [['pv0', 1]] }], false),
      lv('moving', [{ count: 3, stripes: [['pvmove0', 0]] }]),
      lv('pvmove0', [{ count: 3, type: 'mirror', extra: 'mirror_count = 2\n mirrors = ["pv0", 10, "pv1", 0]' }], false),
    ], { pv1: true })));
    expect(r.unhandled).toEqual([
      { name: 'r1', reason: 'segment type raid1' },
      { name: 'moving', reason: 'stacked on LV pvmove0 (a pvmove in progress?)' },
    ]);
    expect(r.freeOnPv.ranges).toEqual([extents(3, 10), extents(13, PE_COUNT)]);
  });

  it('treats no extent as free when a segment type is unknown', async () => {
    const r = await read(makePv(vgText([linear('a', 0, 2), lv('x', [{ count: 1, type: 'future-thing' }])])));
    expect(r.volumes.map((v) => v.name)).toEqual(['/dev/VG/a']);
    expect(r.unhandled).toEqual([{ name: 'x', reason: 'segment type future-thing' }]);
    expect(r.freeOnPv.isEmpty).toBe(true);
    expect(r.notes.join()).toContain('unknown LVM segment type "future-thing"');
  });

  it('reads a text that wraps around the end of the circular buffer', async () => {
    const text = vgText([linear('root', 4, 10)]);
    const pv = makePv(text, { at: MDA_SIZE - 300 });
    expect(view(pv).getBigUint64(MDA_OFFSET + 40, true) + BigInt(text.length + 1)).toBeGreaterThan(BigInt(MDA_SIZE));
    expect((await read(pv)).volumes.map((v) => v.name)).toEqual(['/dev/VG/root']);
  });

  it('says the PV holds no VG when its metadata area is empty, ignored or absent', async () => {
    for (const pv of [makePv(undefined), makePv(vgText([]), { flags: 1 }), makePv(vgText([]), {}, [])]) {
      const r = await read(pv);
      expect(r.vgName).toBe('');
      expect(r.freeOnPv.isEmpty).toBe(true);
      expect(r.notes.join()).toContain('holds no LVM volume group metadata');
    }
  });

  it('uses the newest of two metadata areas and notes a damaged one', async () => {
    const second = { offset: PV_SIZE - 8192, size: 8192 };
    const mdas = [{ offset: MDA_OFFSET, size: MDA_SIZE }, second];
    const pv = makePv(vgText([linear('old', 0, 1)]), {}, mdas);
    putMetadata(pv, vgText([linear('new', 0, 1)], { peCount: 40 }).replace('seqno = 3', 'seqno = 4'), { area: second });
    expect((await read(pv)).volumes.map((v) => v.name)).toEqual(['/dev/VG/new']);
    flip(pv, MDA_OFFSET + 100);
    const r = await read(pv);
    expect(r.volumes.map((v) => v.name)).toEqual(['/dev/VG/new']);
    expect(r.notes.join()).toContain('checksum mismatch');
  });
});

/** Rewrites a u64 of the mda_header (slot 0 offset at 40, size at 48) with a valid header checksum. */
function setSlot(pv: Uint8Array, field: number, value: number): void {
  view(pv).setBigUint64(MDA_OFFSET + field, BigInt(value), true);
  view(pv).setUint32(MDA_OFFSET, lvmCrc(pv.subarray(MDA_OFFSET + 4, MDA_OFFSET + 512)), true);
}

describe('readLvm refuses damaged metadata', () => {
  const good = () => makePv(vgText([linear('root', 4, 10)]));

  it.each([
    ['a metadata area header checksum', (pv: Uint8Array) => flip(pv, MDA_OFFSET + 100), `at byte ${MDA_OFFSET}: metadata area header: checksum mismatch`],
    ['a metadata area header magic', (pv: Uint8Array) => flip(pv, MDA_OFFSET + 5), 'bad magic'],
    ['a metadata text checksum', (pv: Uint8Array) => putMetadata(pv, vgText([]), { corruptText: true }), `at byte ${MDA_OFFSET + 512}: metadata text checksum mismatch`],
    ['a text that does not parse', (pv: Uint8Array) => putMetadata(pv, 'VG { extent_size = }'), 'metadata text line 1: expected a value'],
    ['extents beyond pe_count', (pv: Uint8Array) => putMetadata(pv, vgText([linear('a', 60, 10)])), 'uses extents 60–69, beyond the 64 extents'],
    ['overlapping segments', (pv: Uint8Array) => putMetadata(pv, vgText([linear('a', 0, 10), linear('b', 9, 2)])), 'LV a and LV b both use extent 9'],
    ['extents past the end of the PV', (pv: Uint8Array) => putMetadata(pv, vgText([], { peCount: 65 })), 'end past the'],
    ['a PV the VG does not list', (pv: Uint8Array) => putMetadata(pv, vgText([]).replace(PV_UUID, OTHER_UUID)), 'does not list this PV'],
    ['a text larger than its area', (pv: Uint8Array) => setSlot(pv, 48, MDA_SIZE), `metadata text of ${MDA_SIZE} bytes does not fit`],
    ['a text offset outside its area', (pv: Uint8Array) => setSlot(pv, 40, MDA_SIZE), `metadata text offset ${MDA_SIZE} is outside`],
    ['a metadata area header of another area', (pv: Uint8Array) => setSlot(pv, 24, 8192), 'records start 8192, the PV label says 4096'],
    ['logical extents that overlap', (pv: Uint8Array) => putMetadata(pv, vgText([linear('a', 0, 2).replace('start_extent = 0', 'start_extent = 1')])), 'gap or overlap'],
    ['a stripe on nothing the VG knows', (pv: Uint8Array) => putMetadata(pv, vgText([linear('a', 0, 2, 'pv7')])), 'a stripe names "pv7"'],
    ['a segment type that is not a name', (pv: Uint8Array) => putMetadata(pv, vgText([lv('a', [{ count: 1, type: 'x y' }])])), 'segment type "x y"'],
    ['an LV name that is not a name', (pv: Uint8Array) => putMetadata(pv, vgText([linear('../x', 0, 2)])), 'not a valid LVM name'],
  ])('%s', async (_what, damage, message) => {
    const pv = good();
    damage(pv);
    const err = await layoutError(pv);
    expect(err.message).toMatch(/^LVM metadata on \/dev\/sda2 at byte \d+: /);
    expect(err.message).toContain(message);
  });

  it('refuses a volume without an LVM2 label', async () => {
    expect((await layoutError(new Uint8Array(PV_SIZE))).message).toContain('no LVM2 label');
  });

  it('refuses a metadata area the label puts outside the PV', async () => {
    const pv = makePv(undefined, {}, [{ offset: PV_SIZE - 1024, size: 4096 }]);
    expect((await layoutError(pv)).message).toContain('is not inside the PV');
  });
});

describe('readLvm on mutated metadata (seeded fuzz)', () => {
  const rng = prng;
  const BASE = vgText([
    lv('a', [{ count: 3, stripes: [['pv0', 0]] }, { count: 2, stripes: [['pv0', 3]] }]),
    linear('b', 10, 4),
    lv('s', [{ count: 4, stripes: [['pv0', 20], ['pv1', 0]] }]),
    lv('pool', [{ count: 4, type: 'thin-pool', extra: 'metadata = "b"\n pool = "a"' }]),
    lv('snapshot0', [{ count: 4, type: 'snapshot', extra: 'origin = "b"\n cow_store = "a"' }]),
  ], { pv1: true });
  const ALPHABET = '{}[]=",#\\\n 0123456789-.abpvsegmnt_';

  function mutateText(text: string, next: () => number): string {
    let out = text;
    const edits = 1 + Math.floor(next() * 3);
    for (let i = 0; i < edits; i++) {
      const at = Math.floor(next() * out.length);
      const kind = next();
      if (kind < 0.5) out = out.slice(0, at) + ALPHABET[Math.floor(next() * ALPHABET.length)] + out.slice(at + 1);
      else if (kind < 0.7) out = out.slice(0, at) + out.slice(at + 1 + Math.floor(next() * 20));
      else if (kind < 0.9) out = out.slice(0, at) + out.slice(at, at + 30) + out.slice(at);
      else out = out.slice(0, at);
    }
    return out;
  }

  /** Replaces one number of the text with another in 0–99: LE/PE overlaps, gaps, overruns. */
  function renumber(text: string, next: () => number): string {
    const numbers = [...text.matchAll(/\d+/g)];
    const m = numbers[Math.floor(next() * numbers.length)]!;
    return text.slice(0, m.index) + String(Math.floor(next() * 100)) + text.slice(m.index + m[0].length);
  }

  function check(r: LvmResult): void {
    for (const v of r.volumes) {
      expect(v.offsetBytes).toBeGreaterThanOrEqual(PE_START);
      expect(v.offsetBytes + v.sizeBytes).toBeLessThanOrEqual(PV_SIZE);
      expect(r.freeOnPv.intersect(ExtentSet.of(v.offsetBytes, v.sizeBytes)).isEmpty).toBe(true);
    }
    for (const f of r.freeOnPv.ranges) expect(f.start >= PE_START && f.end <= PV_SIZE).toBe(true);
  }

  async function outcome(pv: Uint8Array): Promise<'ok' | 'error'> {
    try {
      check(await read(pv));
      return 'ok';
    } catch (err) {
      if (!(err instanceof SparsifyError)) throw err;
      expect(err.code).toBe('BAD_LAYOUT');
      return 'error';
    }
  }

  it('returns a result or BAD_LAYOUT for 400 mutated metadata texts', async () => {
    const next = rng(20240611);
    const seen = new Set<string>();
    for (let i = 0; i < 400; i++) {
      const text = mutateText(BASE, next);
      seen.add(await outcome(makePv(text, { at: 512 + Math.floor(next() * (MDA_SIZE - 512)) })));
    }
    expect(seen).toEqual(new Set(['ok', 'error']));
  }, 30_000);

  it('returns a result or BAD_LAYOUT for 300 texts with a number changed', async () => {
    const next = rng(99);
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) seen.add(await outcome(makePv(renumber(BASE, next))));
    expect(seen).toEqual(new Set(['ok', 'error']));
  }, 30_000);

  it('returns a result or BAD_LAYOUT for 400 mutated headers, checksums recomputed or not', async () => {
    const next = rng(7);
    const seen = new Set<string>();
    for (let i = 0; i < 400; i++) {
      const pv = makePv(BASE);
      const at = MDA_OFFSET + 4 + Math.floor(next() * 60);
      pv[at] = Math.floor(next() * 256);
      if (next() < 0.7) view(pv).setUint32(MDA_OFFSET, lvmCrc(pv.subarray(MDA_OFFSET + 4, MDA_OFFSET + 512)), true);
      seen.add(await outcome(pv));
    }
    expect(seen.has('error')).toBe(true);
  }, 30_000);
});
