/** A failed shrink step's tool message becomes one line without the tool's version banner. */
import { expect, it } from 'vitest';
import { oneLine } from '../../../src/shrink/run.js';

it('joins the lines, drops the version banner and a repeated tool name', () => {
  const message = 'e2fsck: e2fsck 1.47.0 (5-Feb-2023)\n/dev/sda1 has unsupported feature(s): FEATURE_I30\ne2fsck: Get a newer version of e2fsck!\n';
  expect(oneLine(message)).toBe('/dev/sda1 has unsupported feature(s): FEATURE_I30; e2fsck: Get a newer version of e2fsck!');
  expect(oneLine('resize2fs: resize2fs: No space left on device')).toBe('resize2fs: No space left on device');
  expect(oneLine('plain')).toBe('plain');
  // libguestfs passes on only the first line of some tools' stderr: then the banner is all there is.
  expect(oneLine('e2fsck: e2fsck 1.47.0 (5-Feb-2023)')).toBe('e2fsck: e2fsck 1.47.0 (5-Feb-2023)');
});
