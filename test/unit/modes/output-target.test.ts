import { basename, dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { partialPathFor } from '../../../src/modes/output-target.js';

describe('partialPathFor', () => {
  it('is .NAME.sparsify-PID.partial beside the output', () => {
    expect(partialPathFor('/data/vm.qcow2', 42)).toBe('/data/.vm.qcow2.sparsify-42.partial');
  });

  it.each([249, 255])('fits NAME_MAX for a legal %i-byte name, keeping the ending', (length) => {
    const out = `/data/${'a'.repeat(length)}`;
    const partial = partialPathFor(out, 4194304);
    expect(dirname(partial)).toBe('/data');
    expect(Buffer.byteLength(basename(partial))).toBeLessThanOrEqual(255);
    expect(basename(partial)).toMatch(/^\.a+\.sparsify-4194304\.partial$/);
  });

  it('cuts multi-byte names at a character boundary', () => {
    const partial = basename(partialPathFor(`/d/${'é'.repeat(127)}`, 7));
    expect(Buffer.byteLength(partial)).toBeLessThanOrEqual(255);
    expect(partial).toMatch(/^\.é+\.sparsify-7\.partial$/);
  });
});
