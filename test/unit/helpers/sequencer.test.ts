import { describe, expect, it } from 'vitest';
import { orderFiles, type FileToOrder } from '../../helpers/sequencer.js';

const f = (file: string, seconds?: number, needsGuest = false): FileToOrder<string> => ({ file, seconds, needsGuest });

describe('orderFiles (the suite order of test/helpers/sequencer.ts)', () => {
  it('starts slow files that need no guest until both workers are held for the build, then the slow files longest first', () => {
    const files = [f('quick', 5), f('a', 300), f('b', 400), f('c', 250), f('d', 200), f('guest-long', 450, true), f('guest-short', 120, true), f('unknown')];
    // The build takes 300 s on two workers: b (400) and a (300) hold them for 700 s ≥ 600 s.
    expect(orderFiles(files, 300, 2)).toEqual(['b', 'a', 'guest-long', 'c', 'd', 'guest-short', 'quick', 'unknown']);
  });

  it('covers the build on each worker, not in sum: a worker free before the build ends takes another file that needs no guest', () => {
    const files = [f('g', 450, true), f('d', 100), f('c', 250), f('b', 400)];
    // b (400) and c (250) make 650 s ≥ 600 s, but c's worker would be free at 250 s and wait for the guest: d follows c there.
    expect(orderFiles(files, 300, 2)).toEqual(['b', 'c', 'd', 'g']);
  });

  it('without a file that needs the guest: every slow file longest first, then the rest as given', () => {
    expect(orderFiles([f('x', 10), f('a', 100), f('b', 200), f('y')], 300, 2)).toEqual(['b', 'a', 'x', 'y']);
  });

  it('a file that needs the guest with no known time comes after the slow ones, before the rest', () => {
    expect(orderFiles([f('x', 10), f('g', undefined, true), f('a', 700)], 300, 2)).toEqual(['a', 'g', 'x']);
  });
});
