import { describe, expect, it } from 'vitest';
import { parseQcow2Extensions, parseQcow2Header, type Qcow2Header } from '../../../src/qemu/qcow2-header.js';
import { encodeHeader } from '../../../src/qcow2/format.js';
import { directReadRefusal, parseL1Entry, parseL2Entry } from '../../../src/qcow2/mapping.js';

const CS = 65536;
const FILE = 100 * CS;

/** A qcow2 v3 header of an 8 GiB image with 64 KiB clusters, as the writer makes it, then `mutate`d. */
function header(mutate: (view: DataView) => void = () => {}): { header: Qcow2Header; cluster0: Uint8Array } {
  const cluster0 = new Uint8Array(CS);
  cluster0.set(encodeHeader({
    clusterBits: 16,
    virtualSizeBytes: 8 * 2 ** 30,
    l1Entries: 16,
    l1TableOffsetBytes: CS,
    refcountTableOffsetBytes: 2 * CS,
    refcountTableClusters: 1,
    compressionType: 'zlib',
  }));
  mutate(new DataView(cluster0.buffer));
  return { header: parseQcow2Header(cluster0), cluster0 };
}

function refusalOf(mutate: (view: DataView) => void, fileSizeBytes = FILE): string | undefined {
  const h = header(mutate);
  return directReadRefusal(h.header, parseQcow2Extensions(h.cluster0, h.header), fileSizeBytes);
}

function entry(value: bigint): DataView {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, value);
  return view;
}

describe('directReadRefusal', () => {
  it('accepts a plain image, and one that only names zstd as its compression type', () => {
    expect(refusalOf(() => {})).toBeUndefined();
    expect(refusalOf((v) => v.setBigUint64(72, 1n << 3n))).toBeUndefined();
  });

  it.each([
    ['a backing file', (v: DataView) => (v.setBigUint64(8, 512n), v.setUint32(16, 4)), /backing file/],
    ['encryption', (v: DataView) => v.setUint32(32, 2), /encrypted/],
    ['a dirty bit', (v: DataView) => v.setBigUint64(72, 1n), /incompatible features 0x1/],
    ['extended L2 entries', (v: DataView) => v.setBigUint64(72, 1n << 4n), /incompatible features 0x10/],
    ['an external data file', (v: DataView) => v.setBigUint64(72, 1n << 2n), /incompatible features 0x4/],
    ['an L1 table too short for the disk', (v: DataView) => v.setUint32(36, 15), /L1 table does not cover/],
  ])('leaves an image with %s to qemu', (_name, mutate, reason) => {
    expect(refusalOf(mutate)).toMatch(reason);
  });

  it('leaves an image whose L1 table lies past the end of the file to qemu', () => {
    expect(refusalOf(() => {}, CS + 16 * 8 - 1)).toMatch(/outside the file/);
  });
});

describe('parseL1Entry and parseL2Entry', () => {
  const h = header().header;

  it('reads an L1 entry: none, an L2 table, or one left to qemu (reserved bits, unaligned, past the end)', () => {
    expect(parseL1Entry(entry(0n), 0, CS, FILE)).toBe(0);
    expect(parseL1Entry(entry((1n << 63n) | BigInt(3 * CS)), 0, CS, FILE)).toBe(3 * CS);
    expect(parseL1Entry(entry(BigInt(3 * CS) | 1n), 0, CS, FILE)).toBeUndefined();
    expect(parseL1Entry(entry(BigInt(3 * CS + 512)), 0, CS, FILE)).toBeUndefined();
    expect(parseL1Entry(entry(BigInt(FILE)), 0, CS, FILE)).toBeUndefined();
  });

  it('reads an L2 entry: unallocated and "all zeros" are zero, a whole cluster in the file is data', () => {
    expect(parseL2Entry(entry(0n), 0, h, FILE)).toEqual({ kind: 'zero', hostOffsetBytes: 0 });
    expect(parseL2Entry(entry(1n), 0, h, FILE)).toEqual({ kind: 'zero', hostOffsetBytes: 0 });
    expect(parseL2Entry(entry((1n << 63n) | BigInt(5 * CS) | 1n), 0, h, FILE)).toEqual({ kind: 'zero', hostOffsetBytes: 0 });
    expect(parseL2Entry(entry((1n << 63n) | BigInt(5 * CS)), 0, h, FILE)).toEqual({ kind: 'data', hostOffsetBytes: 5 * CS });
  });

  it('leaves compressed clusters, reserved bits, unaligned or outside data, and v2 "all zeros" to qemu', () => {
    expect(parseL2Entry(entry((1n << 62n) | BigInt(5 * CS + 100)), 0, h, FILE).kind).toBe('other');
    expect(parseL2Entry(entry(BigInt(5 * CS) | 2n), 0, h, FILE).kind).toBe('other');
    expect(parseL2Entry(entry(BigInt(5 * CS) | (1n << 56n)), 0, h, FILE).kind).toBe('other');
    expect(parseL2Entry(entry(BigInt(5 * CS + 512)), 0, h, FILE).kind).toBe('other');
    expect(parseL2Entry(entry(BigInt(FILE - CS)), 0, h, FILE - 1).kind).toBe('other');
    expect(parseL2Entry(entry(1n), 0, { ...h, version: 2 }, FILE).kind).toBe('other');
  });
});
