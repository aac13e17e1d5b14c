/** readSwapFreeMap on swap headers built here after include/linux/swap.h (union swap_header). */
import { describe, expect, it } from 'vitest';
import type { BlockReader } from '../../../../src/disk/types.js';
import { isSparsifyError } from '../../../../src/errors.js';
import { readSwapFreeMap } from '../../../../src/fs/swap/free-map.js';
import { prng } from '../../../helpers/copy-fakes.js';
import { memoryReader } from '../../../helpers/mem-reader.js';

const MiB = 1024 * 1024;

const reader = memoryReader;

interface SwapOptions {
  pageBytes?: number;
  signature?: string;
  littleEndian?: boolean;
  version?: number;
  badPages?: number;
}

/** A swap area of `sizeBytes` whose first page is a v1 header (only the first page is stored). */
function swapArea(sizeBytes: number, o: SwapOptions = {}): BlockReader {
  const page = o.pageBytes ?? 4096;
  const head = new Uint8Array(page);
  const v = new DataView(head.buffer);
  const le = o.littleEndian ?? true;
  v.setUint32(1024, o.version ?? 1, le);
  v.setUint32(1028, sizeBytes / page - 1, le);
  v.setUint32(1032, o.badPages ?? 0, le);
  for (let i = 0; i < (o.badPages ?? 0); i++) v.setUint32(1536 + 4 * i, 10 + i, le);
  head.set([...'0123456789abcdef'].map((c) => c.charCodeAt(0)), 1036);
  head.set([...'mylabel'].map((c) => c.charCodeAt(0)), 1052);
  head.set([...(o.signature ?? 'SWAPSPACE2')].map((c) => c.charCodeAt(0)), page - 10);
  return reader(head, sizeBytes);
}

describe('readSwapFreeMap', () => {
  it('frees everything after the first page of a v1 swap area', async () => {
    const map = await readSwapFreeMap(swapArea(64 * MiB));
    expect(map).toMatchObject({ trusted: true, unitBytes: 4096, counterFreeBytes: 64 * MiB - 4096 });
    if (!map.trusted) return;
    expect(map.free.ranges).toEqual([{ start: 4096, end: 64 * MiB }]);
    expect(map.detail).toBe('swap v1, 4096-byte pages');
  });

  it('reads a header written in big-endian order', async () => {
    expect((await readSwapFreeMap(swapArea(MiB, { littleEndian: false }))).trusted).toBe(true);
  });

  it('zeroes bad pages too, and says so', async () => {
    const map = await readSwapFreeMap(swapArea(MiB, { badPages: 3 }));
    expect(map).toMatchObject({ trusted: true, counterFreeBytes: MiB - 4096, detail: /3 bad pages \(zeroed too\)/ });
  });

  it('keeps the whole first page of a 64 KiB-page swap area', async () => {
    const map = await readSwapFreeMap(swapArea(4 * MiB, { pageBytes: 65536 }));
    expect(map).toMatchObject({ trusted: true, unitBytes: 65536, counterFreeBytes: 4 * MiB - 65536 });
  });

  it.each(['S1SUSPEND', 'S2SUSPEND', 'ULSUSPEND', 'LINHIB0001'])(
    'a hibernation signature %s is untrusted',
    async (signature) => {
      expect(await readSwapFreeMap(swapArea(MiB, { signature }))).toEqual({
        trusted: false,
        reason: 'swap holds a hibernation image',
      });
    },
  );

  it('old SWAP-SPACE (v0) is untrusted', async () => {
    const map = await readSwapFreeMap(swapArea(MiB, { signature: 'SWAP-SPACE' }));
    expect(map).toMatchObject({ trusted: false, reason: /SWAP-SPACE, v0/ });
  });

  it('an unknown header version is untrusted', async () => {
    const map = await readSwapFreeMap(swapArea(MiB, { version: 2 }));
    expect(map).toMatchObject({ trusted: false, reason: /version 2/ });
  });

  it('no signature, or a volume smaller than a page: BAD_IMAGE', async () => {
    await expect(readSwapFreeMap(swapArea(MiB, { signature: 'NOTASWAP!!' }))).rejects.toMatchObject({
      code: 'BAD_IMAGE',
    });
    await expect(readSwapFreeMap(reader(new Uint8Array(4000)))).rejects.toMatchObject({ code: 'BAD_IMAGE' });
  });

  it('2000 mutated headers and sizes give a FreeMap inside the volume or a SparsifyError', async () => {
    const rand = prng(7);
    for (let i = 0; i < 2000; i++) {
      const page = rand() < 0.8 ? 4096 : 65536;
      const head = new Uint8Array(page);
      const base = swapArea(page * 4, { pageBytes: page, badPages: i % 3 });
      head.set(await base.read(0, page));
      for (let e = 0; e < 4; e++) {
        const at = rand() < 0.5 ? 1024 + Math.floor(rand() * 16) : page - 10 + Math.floor(rand() * 10);
        head[at] = Math.floor(rand() * 256);
      }
      const vol = reader(head, Math.floor(rand() * page * 8));
      try {
        const map = await readSwapFreeMap(vol);
        if (map.trusted) expect(map.free.ranges.every((r) => r.start >= 4096 && r.end <= vol.sizeBytes)).toBe(true);
      } catch (err) {
        if (!isSparsifyError(err, 'BAD_IMAGE')) throw err;
      }
    }
  });
});
