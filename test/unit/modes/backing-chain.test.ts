import { describe, expect, it } from 'vitest';
import { decideChain } from '../../../src/modes/backing-chain.js';
import type { OutputDecision } from '../../../src/modes/output-format.js';

const qcow2Out: OutputDecision = { format: 'qcow2', compress: false, sizeBytes: 1 << 30, ova: false };
const chained = { format: 'qcow2', backingFile: '/img/base.qcow2', backingName: 'base.qcow2', backingFormat: 'qcow2', backingChain: [{ path: '/img/base.qcow2', format: 'qcow2' }] };
const paths = { input: '/img/top.qcow2', output: '/img/small.qcow2' };

describe('decideChain', () => {
  it('no chain: nothing to say; a chain without --keep-backing: flattened, naming the base', () => {
    expect(decideChain(paths, { format: 'qcow2', backingChain: [] }, qcow2Out)).toEqual({ kind: 'none' });
    expect(decideChain(paths, chained, qcow2Out)).toEqual({ kind: 'flattened', base: '/img/base.qcow2' });
  });

  it('--keep-backing: the base as IN names it beside IN; made absolute when OUT lies elsewhere; its format', () => {
    expect(decideChain({ ...paths, keepBacking: 'always' as const }, chained, qcow2Out)).toEqual({ kind: 'kept', base: '/img/base.qcow2', name: 'base.qcow2', format: 'qcow2' });
    expect(decideChain({ ...paths, output: '/out/small.qcow2', keepBacking: 'always' as const }, chained, qcow2Out)).toMatchObject({ kind: 'kept', name: '/img/base.qcow2' });
    // No format in the header: the one qemu probed for the chain.
    const { backingFormat: _f, ...unnamed } = chained;
    expect(decideChain({ ...paths, keepBacking: 'always' as const }, { ...unnamed, backingChain: [{ path: '/img/base.qcow2', format: 'raw' }] }, qcow2Out)).toMatchObject({ format: 'raw' });
  });

  it('--keep-backing over a batch copies a disk with no chain as it is, and still keeps one that has a chain', () => {
    const batch = { ...paths, keepBacking: 'where-chained' as const };
    expect(decideChain(batch, { format: 'raw', backingChain: [] }, { ...qcow2Out, format: 'raw' })).toEqual({ kind: 'none' });
    expect(decideChain(batch, { format: 'qcow2', backingChain: [] }, qcow2Out)).toEqual({ kind: 'none' });
    expect(decideChain(batch, chained, qcow2Out)).toMatchObject({ kind: 'kept', base: '/img/base.qcow2' });
  });

  it('--keep-backing refuses, in one line, what cannot keep a chain', () => {
    const keep = { ...paths, keepBacking: 'always' as const };
    const cases: [Parameters<typeof decideChain>, RegExp][] = [
      [[keep, { format: 'qcow2', backingChain: [] }, qcow2Out], /has no backing file/],
      [[keep, { ...chained, format: 'vmdk' }, qcow2Out], /is vmdk, and only a qcow2/],
      [[keep, chained, { ...qcow2Out, format: 'raw' }], /not raw/],
      [[keep, chained, { ...qcow2Out, compress: true }], /not a compressed qcow2/],
      [[keep, chained, { ...qcow2Out, createOptions: 'compat=0.10' }], /compat=0.10/],
      [[{ ...keep, shrink: { margin: { kind: 'share', share: 0.05 } } as never }, chained, qcow2Out], /--keep-backing and --shrink/],
    ];
    for (const [args, message] of cases) {
      expect(() => decideChain(...args)).toThrow(message);
    }
  });
});
