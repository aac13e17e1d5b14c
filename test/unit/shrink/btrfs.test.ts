/** btrfs shrinking's pure parts: the decider row (single device only), min-dev-size's answer, the target size. */
import { describe, expect, it } from 'vitest';
import type { Volume } from '../../../src/layout/types.js';
import { btrfsTargetBytes, parseMinimumBytes } from '../../../src/shrink/btrfs.js';
import { decideShrink } from '../../../src/shrink/decide.js';

const MiB = 1 << 20;
const part: Volume = { name: '/dev/sda1', offsetBytes: MiB, sizeBytes: 512 * MiB, kind: 'partition', partitionNumber: 1 };

describe('decideShrink for btrfs', () => {
  it('a single-device btrfs is resized', () => {
    expect(decideShrink(part, { type: 'btrfs' })).toEqual({ action: 'resize-btrfs' });
  });

  it('a btrfs over several devices keeps its size and says why', () => {
    expect(decideShrink(part, { type: 'btrfs', devices: 2 })).toEqual({ action: 'keep', reason: 'a btrfs over 2 devices: its other devices are not on this disk, kept its size' });
  });
});

describe('parseMinimumBytes', () => {
  it('reads the byte count vfs-minimum-size prints', () => {
    expect(parseMinimumBytes('441450496\n', '/dev/sda1')).toBe(441450496);
  });

  it.each(['', '0', '-5', '4.5', '441450496 bytes (421.00MiB)', '99999999999999999999'])('refuses %j, naming the device', (text) => {
    expect(() => parseMinimumBytes(text, '/dev/sda1')).toThrow(/min-dev-size \/dev\/sda1: not a size/);
  });
});

describe('btrfsTargetBytes', () => {
  it('is the minimum plus the margin, rounded up to whole sectors and the alignment', () => {
    expect(btrfsTargetBytes(100 * MiB, { kind: 'percent', percent: 5 }, 512 * MiB, 4096, 512)).toEqual({ marginBytes: 5 * MiB, targetBytes: 105 * MiB });
    expect(btrfsTargetBytes(100 * MiB + 1, { kind: 'bytes', bytes: 0 }, 512 * MiB, 4096, 512)).toEqual({ marginBytes: 0, targetBytes: 100 * MiB + 4096 });
    expect(btrfsTargetBytes(100 * MiB, { kind: 'bytes', bytes: 1 }, 512 * MiB, 4096, 65536).targetBytes).toBe(100 * MiB + 65536);
  });

  it('never goes past the old size (a whole number of sectors)', () => {
    expect(btrfsTargetBytes(500 * MiB, { kind: 'percent', percent: 5 }, 512 * MiB + 100, 4096, 512).targetBytes).toBe(512 * MiB);
  });
});
