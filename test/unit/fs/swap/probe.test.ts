/**
 * The one swap signature table (src/fs/swap/header.ts), seen through both of its users: the
 * probe's detector and the map engine's free-map reader must agree on every signature, format
 * and page size. Headers are built here after include/linux/swap.h, and made by mkswap.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasTuxOnIceMagic, parseSwapSignature } from '../../../../src/fs/swap/header.js';
import { readSwapFreeMap } from '../../../../src/fs/swap/free-map.js';
import { detectSwap } from '../../../../src/fs/swap/probe.js';
import { probeVolume, PROBE_HEAD_BYTES } from '../../../../src/fs/probe.js';
import type { BlockReader } from '../../../../src/disk/types.js';
import { memoryReader } from '../../../helpers/mem-reader.js';
import { openFileReader } from '../../../helpers/file-reader.js';
import { hasTool } from '../../../helpers/require.js';

const MiB = 1024 * 1024;
const TUXONICE_MAGIC = [0xed, 0xc3, 0x02, 0xe9, 0x98, 0x56, 0xe5, 0x0c];
const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));

/** A 1 MiB swap area with a v1 header and `signature` ending its first page of `pageBytes`. */
function swapArea(pageBytes: number, signature: string, tuxOnIce = false): Uint8Array {
  const vol = new Uint8Array(MiB);
  const v = new DataView(vol.buffer);
  v.setUint32(1024, 1, true);
  v.setUint32(1028, MiB / pageBytes - 1, true);
  vol.set(ascii('swaplabel'), 1052);
  vol.set(ascii(signature), pageBytes - 10);
  if (tuxOnIce) vol.set(TUXONICE_MAGIC, 0);
  return vol;
}

async function detect(reader: BlockReader) {
  return detectSwap(reader, await reader.read(0, Math.min(reader.sizeBytes, PROBE_HEAD_BYTES)));
}

describe('the swap signature table', () => {
  it('knows v1, v0 and the four hibernation signatures, and nothing else', () => {
    expect(parseSwapSignature(new Uint8Array(ascii('SWAPSPACE2')))).toBe('v1');
    expect(parseSwapSignature(new Uint8Array(ascii('SWAP-SPACE')))).toBe('v0');
    for (const s of ['S1SUSPEND\0', 'S2SUSPEND\0', 'ULSUSPEND\0', 'LINHIB0001']) {
      expect(parseSwapSignature(new Uint8Array(ascii(s)))).toBe('hibernated');
    }
    for (const s of ['SWSUSPEND2', 'HIBERNATE!', 'swapspace2', 'SWAPSPACE', '\0'.repeat(10)]) {
      expect(parseSwapSignature(new Uint8Array(ascii(s)))).toBeUndefined();
    }
    expect(hasTuxOnIceMagic(new Uint8Array(TUXONICE_MAGIC))).toBe(true);
    expect(hasTuxOnIceMagic(new Uint8Array(TUXONICE_MAGIC.slice(0, 7)))).toBe(false);
  });

  const rows: [string, string, boolean, 'v1' | 'v0' | 'hibernated'][] = [
    ['swap v1', 'SWAPSPACE2', false, 'v1'],
    ['swap v0', 'SWAP-SPACE', false, 'v0'],
    ['swsusp', 'S1SUSPEND', false, 'hibernated'],
    ['old swsusp', 'S2SUSPEND', false, 'hibernated'],
    ['uswsusp', 'ULSUSPEND', false, 'hibernated'],
    ['TuxOnIce', 'LINHIB0001', false, 'hibernated'],
    ['TuxOnIce over an intact swap signature', 'SWAPSPACE2', true, 'hibernated'],
  ];
  const cases = [4096, 16384, 65536].flatMap((page) => rows.map(([name, sig, toi, kind]) => [`${name}, ${page / 1024} KiB pages`, page, sig, toi, kind] as const));

  it.each(cases)('%s: the probe and the free-map reader agree', async (_name, pageBytes, signature, tuxOnIce, kind) => {
    const reader = memoryReader(swapArea(pageBytes, signature, tuxOnIce));
    const found = await detect(reader);
    const map = await readSwapFreeMap(reader);
    expect(found?.magicOffsetBytes).toBe(pageBytes - 10);
    expect(found?.result).toMatchObject({ type: 'swap', blockSizeBytes: pageBytes });
    if (kind === 'hibernated') {
      expect(found?.result.hibernated).toBe(true);
      expect(map).toEqual({ trusted: false, reason: 'swap holds a hibernation image' });
    } else {
      expect(found?.result).not.toHaveProperty('hibernated');
      expect(map.trusted).toBe(kind === 'v1');
      if (map.trusted) expect(map).toMatchObject({ unitBytes: pageBytes, counterFreeBytes: MiB - pageBytes });
      else expect(map.reason).toMatch(/v0/);
    }
  });

  it.each(['SWSUSPEND2', 'HIBERNATE!'])('a signature outside the table (%s) is no swap to either', async (signature) => {
    const reader = memoryReader(swapArea(4096, signature));
    expect(await detect(reader)).toBeUndefined();
    await expect(readSwapFreeMap(reader)).rejects.toMatchObject({ code: 'BAD_IMAGE' });
  });

  it('a v1 header whose last page lies outside the volume is found but not confirmed live', async () => {
    const vol = swapArea(4096, 'SWAPSPACE2');
    new DataView(vol.buffer).setUint32(1028, 10_000, true);
    const found = await detect(memoryReader(vol));
    expect(found?.result.type).toBe('swap');
    expect(await found?.confirm()).toBe(false);
  });
});

describe.skipIf(!hasTool('mkswap'))('swap made by mkswap', () => {
  // Made in beforeAll, not while the file is collected: a filtered or skipped run never calls afterAll.
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sparsify-swap-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([4096, 16384, 65536])('%i-byte pages: probed with label, UUID and page size; all but the first page free', async (pageBytes) => {
    const file = join(dir, `swap-${pageBytes}.img`);
    writeFileSync(file, new Uint8Array(4 * MiB));
    const uuid = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
    execFileSync('mkswap', ['--pagesize', String(pageBytes), '-L', 'sw', '-U', uuid, file], { stdio: 'ignore' });
    await using reader = await openFileReader(file);
    expect(await probeVolume(reader)).toEqual({ type: 'swap', uuid, label: 'sw', blockSizeBytes: pageBytes });
    expect(await readSwapFreeMap(reader)).toMatchObject({ trusted: true, unitBytes: pageBytes, counterFreeBytes: 4 * MiB - pageBytes });
  });
});
