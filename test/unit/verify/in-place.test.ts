import { describe, expect, it } from 'vitest';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import type { BlockSource } from '../../../src/disk/types.js';
import type { Action, VolumePlan } from '../../../src/plan/plan-volumes.js';
import { isSparsifyError } from '../../../src/errors.js';
import { findInPlaceChange, readInPlaceBaseline } from '../../../src/verify/in-place.js';

const MiB = 2 ** 20;
const SIZE = 24 * MiB;

const ZERO_BLOCK = new Uint8Array(65536);

/** A disk in memory; block status says "zero" for every 64 KiB block that is wholly zero. */
function memoryDisk(bytes: Uint8Array): BlockSource {
  const block = 65536;
  return {
    sizeBytes: bytes.length,
    canExtents: true,
    read: (o, l) => Promise.resolve(bytes.slice(o, o + l)),
    extents: (o, l) => {
      const start = o - (o % block);
      const end = Math.min(start + block, o + l);
      const zero = Buffer.compare(bytes.subarray(start, start + block), ZERO_BLOCK.subarray(0, Math.min(block, bytes.length - start))) === 0;
      return Promise.resolve([{ offsetBytes: o, lengthBytes: end - o, zero, hole: zero }]);
    },
  };
}

function plan(name: string, offsetMiB: number, sizeMiB: number, action: Action, type: 'ext4' | 'swap' = 'ext4', protectedRanges = ExtentSet.empty): VolumePlan {
  const volume = { name, offsetBytes: offsetMiB * MiB, sizeBytes: sizeMiB * MiB, kind: 'partition' as const };
  const engine = action === 'keep' ? {} : { engine: action === 'zero' || action === 'swap' ? ('map' as const) : action };
  return { volume, fs: type === 'swap' ? { type, blockSizeBytes: 4096 } : { type }, action, ...engine, reason: 'test', warn: false, protectedRanges };
}

/** An EBR inside the mounted volume: the pass writes it back, so it is checked. */
const EBR = ExtentSet.of(20 * MiB, 512);

// sda1 kept (5 MiB from 1), sda2 --zero (8 MiB from 6), sda3 swap (4 MiB from 14), sda4 mounted (5 MiB from 18).
const PLANS = [
  plan('/dev/sda1', 1, 5, 'keep'),
  plan('/dev/sda2', 6, 8, 'zero'),
  plan('/dev/sda3', 14, 4, 'swap', 'swap'),
  plan('/dev/sda4', 18, 5, 'mount', 'ext4', EBR),
];
const signal = new AbortController().signal;

/** Non-zero bytes that differ from their neighbours (cheaper than a PRNG over 24 MiB). */
function pattern(disk: Uint8Array, start: number, end: number, seed: number): void {
  for (let i = start; i < end; i++) disk[i] = ((i * 131 + (i >>> 9) * seed) % 255) + 1;
}

const BEFORE = new Uint8Array(SIZE);
pattern(BEFORE, 0, SIZE, 7);
BEFORE.fill(0, 2 * MiB, 3 * MiB);

/** The disk before the pass: data everywhere except a zero run inside sda1. */
function before(): Uint8Array {
  return BEFORE.slice();
}

/** What a correct pass leaves: the --zero volume and swap after its header read as zero; sda4 rewritten. */
function afterPass(disk: Uint8Array): Uint8Array {
  const out = disk.slice();
  out.fill(0, 6 * MiB, 14 * MiB);
  out.fill(0, 14 * MiB + 4096, 18 * MiB);
  pattern(out, 18 * MiB, 20 * MiB, 11);
  pattern(out, 20 * MiB + 512, 23 * MiB, 11);
  return out;
}

describe('in-place --verify', () => {
  it('passes a correct pass; the mounted volume is not verified, and the counts add up', async () => {
    const b = await readInPlaceBaseline(memoryDisk(before()), PLANS, signal);
    expect(b.notVerified).toEqual([{ name: '/dev/sda4', reason: 'mounted' }]);
    // The appliance mounts too (a journal it replays changes used blocks).
    const inVm = await readInPlaceBaseline(memoryDisk(before()), [...PLANS.slice(0, 3), plan('/dev/sda4', 18, 5, 'appliance', 'ext4', EBR)], signal);
    expect(inVm.notVerified).toEqual([{ name: '/dev/sda4', reason: 'mounted' }]);
    expect(b.zeroed.totalBytes).toBe(8 * MiB + 4 * MiB - 4096);
    expect(b.keptZero.totalBytes).toBe(MiB);
    expect(b.hashed.totalBytes + b.keptZero.totalBytes + b.zeroed.totalBytes).toBe(SIZE - 5 * MiB + 512);
    expect(await findInPlaceChange(memoryDisk(afterPass(before())), b, signal)).toBeUndefined();
  });

  it.each([
    ['a byte of a kept volume', 5 * MiB + 7, { kind: 'changed', offsetBytes: 0, endBytes: 6 * MiB }],
    ['a byte past the last volume', 23 * MiB + 1, { kind: 'changed', offsetBytes: 20 * MiB, endBytes: 24 * MiB }],
    ['the swap header', 14 * MiB + 100, { kind: 'changed', offsetBytes: 14 * MiB, endBytes: 14 * MiB + 4096 }],
    ['a discarded byte', 9 * MiB + 3, { kind: 'not-zero', offsetBytes: 9 * MiB + 3 }],
    ['a byte that read as zero before', 2 * MiB + 5, { kind: 'not-zero', offsetBytes: 2 * MiB + 5 }],
    ['an EBR inside the mounted volume', 20 * MiB + 510, { kind: 'changed', offsetBytes: 20 * MiB, endBytes: 24 * MiB }],
  ] as const)('finds %s changed', async (_, at, finding) => {
    const b = await readInPlaceBaseline(memoryDisk(before()), PLANS, signal);
    const after = afterPass(before());
    after[at] = (after[at]! + 1) & 0xff || 1;
    expect(await findInPlaceChange(memoryDisk(after), b, signal)).toEqual(finding);
  });

  it('leaves the mounted volume alone: a change there is no finding', async () => {
    const b = await readInPlaceBaseline(memoryDisk(before()), PLANS, signal);
    const after = afterPass(before());
    after.fill(0, 19 * MiB, 20 * MiB);
    expect(await findInPlaceChange(memoryDisk(after), b, signal)).toBeUndefined();
  });

  it('stops with CANCELLED when the signal aborts', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await readInPlaceBaseline(memoryDisk(before()), PLANS, controller.signal).catch((e: unknown) => e);
    expect(isSparsifyError(err, 'CANCELLED')).toBe(true);
  });
});
