import { describe, expect, it } from 'vitest';
import { chooseCompressedWriter } from '../../../src/qcow2/create-options.js';

const host = { zstdAvailable: true };

describe('chooseCompressedWriter', () => {
  it('takes qemu-img create defaults: 64 KiB clusters, zlib', () => {
    expect(chooseCompressedWriter(undefined, host)).toEqual({ use: 'writer', options: { clusterBits: 16, compressionType: 'zlib' } });
  });

  it.each([
    ['cluster_size=4096,compression_type=zstd', 12, 'zstd'],
    ['cluster_size=2M', 21, 'zlib'],
    ['compat=1.1,cluster_size=512,compression_type=zlib', 9, 'zlib'],
    ['cluster_size=128k,', 17, 'zlib'],
  ] as const)('honours %s', (options, clusterBits, compressionType) => {
    expect(chooseCompressedWriter(options, host)).toEqual({ use: 'writer', options: { clusterBits, compressionType } });
  });

  it.each([
    ['cluster_size=3', /cluster_size=3/],
    ['cluster_size=4M', /cluster_size=4M/],
    ['cluster_size=1.5k', /cluster_size/],
    ['compression_type=lz4', /compression_type=lz4/],
    ['compat=0.10', /compat=0.10/],
    ['refcount_bits=64', /refcount_bits/],
    ['backing_file=a,,b.qcow2', /backing_file=a,b.qcow2/],
    ['lazy_refcounts', /lazy_refcounts/],
  ])('leaves %s to qemu-img', (options, reason) => {
    const choice = chooseCompressedWriter(options, host);
    expect(choice.use).toBe('qemu');
    expect(choice.use === 'qemu' && choice.reason).toMatch(reason);
  });

  it('leaves zstd to qemu when the zstd binding cannot be loaded', () => {
    expect(chooseCompressedWriter('compression_type=zstd', { zstdAvailable: false }).use).toBe('qemu');
    expect(chooseCompressedWriter('compression_type=zlib', { zstdAvailable: false }).use).toBe('writer');
  });
});
