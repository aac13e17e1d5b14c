import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openKeyStore } from '../../../src/keys/key-store.js';
import { parseKeySelector } from '../../../src/keys/selector.js';

const UUID = '3866a5ba-723d-40f5-a1dc-d7be3cc680a3';
const text = (keys: { bytes(): Uint8Array }[]) => keys.map((k) => new TextDecoder().decode(k.bytes()));

describe('openKeyStore', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-keys-'));
    await writeFile(join(dir, 'k'), 'from file\nsecond line\n');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('gives every key whose ID is the volume, its UUID or all, in command-line order', async () => {
    const store = openKeyStore({
      selectors: ['/dev/sda3:key:other', `${UUID}:key:by-uuid`, 'all:key:for-all', '/dev/sda2:key:by-name'].map(parseKeySelector),
      fromStdin: false,
    }, Readable.from([]));
    expect(text(await store.keysFor('/dev/sda2', UUID))).toEqual(['by-uuid', 'for-all', 'by-name']);
    expect(text(await store.keysFor('/dev/sda9', ''))).toEqual(['for-all']);
  });

  it('reads the first line of a key file, when asked', async () => {
    const store = openKeyStore({ selectors: [parseKeySelector(`all:file:${join(dir, 'k')}`)], fromStdin: false }, Readable.from([]));
    expect(text(await store.keysFor('/dev/sda2', UUID))).toEqual(['from file']);
    const missing = openKeyStore({ selectors: [parseKeySelector(`all:file:${join(dir, 'nope')}`)], fromStdin: false }, Readable.from([]));
    await expect(missing.keysFor('/dev/sda2', UUID)).rejects.toMatchObject({ code: 'BAD_PATH' });
  });

  it('with --keys-from-stdin, a volume no --key matches takes the next line; none left is an error', async () => {
    const store = openKeyStore({ selectors: [parseKeySelector('/dev/sda1:key:given')], fromStdin: true }, Readable.from(['one\ntw', 'o\n']));
    expect(text(await store.keysFor('/dev/sda1', ''))).toEqual(['given']);
    expect(text(await store.keysFor('/dev/sda2', ''))).toEqual(['one']);
    expect(text(await store.keysFor('/dev/sda3', ''))).toEqual(['two']);
    await expect(store.keysFor('/dev/sda4', '')).rejects.toMatchObject({ code: 'USAGE', message: '--keys-from-stdin: no line left on stdin for the key of /dev/sda4' });
  });

  it('without --keys-from-stdin, a volume with no key gets none', async () => {
    const store = openKeyStore({ selectors: [parseKeySelector('/dev/sda1:key:given')], fromStdin: false }, Readable.from(['x\n']));
    expect(await store.keysFor('/dev/sda2', '')).toEqual([]);
  });
});
