/** The LUKS driver's detector, on headers built here and on headers written by cryptsetup luksFormat. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { luksDriver } from '../../../../src/fs/luks/index.js';
import { parseLuksHeader } from '../../../../src/fs/luks/probe.js';
import { probeVolume } from '../../../../src/fs/probe.js';
import { memoryReader } from '../../../helpers/mem-reader.js';
import { openFileReader } from '../../../helpers/file-reader.js';
import { hasTool } from '../../../helpers/require.js';

const UUID = '0123abcd-4567-89ef-0011-223344556677';
const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));

/** A LUKS binary header: magic, big-endian version, UUID at 168, the LUKS2 label at 24. */
function header(version: number, label = ''): Uint8Array {
  const hdr = new Uint8Array(4096);
  hdr.set([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, version >> 8, version & 0xff]);
  hdr.set(ascii(UUID), 168);
  hdr.set(ascii(label), 24);
  return hdr;
}

describe('parseLuksHeader', () => {
  it('decodes LUKS1 (no label) and LUKS2 (with its label)', () => {
    expect(parseLuksHeader(header(1, 'ignored in v1'))).toEqual({ type: 'luks', uuid: UUID, detail: 'LUKS1' });
    expect(parseLuksHeader(header(2, 'secret'))).toEqual({ type: 'luks', uuid: UUID, label: 'secret', detail: 'LUKS2' });
  });

  it('refuses another version, a broken magic and a short header', () => {
    expect(parseLuksHeader(header(3))).toBeUndefined();
    const bad = header(1);
    bad[4] = 0xbb;
    expect(parseLuksHeader(bad)).toBeUndefined();
    expect(parseLuksHeader(header(1).subarray(0, 511))).toBeUndefined();
  });
});

describe('luksDriver.detect', () => {
  it('finds the header at byte 0, but not on a volume smaller than it', async () => {
    const vol = header(2);
    expect(await luksDriver.detect(memoryReader(vol), vol)).toMatchObject({ result: { type: 'luks' }, magicOffsetBytes: 0 });
    const small = vol.slice(0, 400);
    expect(await luksDriver.detect(memoryReader(small), small)).toBeUndefined();
  });
});

describe.skipIf(!hasTool('cryptsetup'))('LUKS written by cryptsetup luksFormat on a plain file', () => {
  // Made in beforeAll, not while the file is collected: a filtered or skipped run never calls afterAll.
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sparsify-luks-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['luks1', 'luks2'] as const)('%s is probed with its UUID (and LUKS2 label)', async (type) => {
    const file = join(dir, `${type}.img`);
    const key = join(dir, 'key');
    writeFileSync(key, 'not a secret');
    writeFileSync(file, new Uint8Array(0));
    execFileSync('truncate', ['-s', '32M', file]);
    const label = type === 'luks2' ? ['--label', 'vault'] : [];
    // The cheapest key derivation: only the header is under test, not its strength.
    const pbkdf = type === 'luks2' ? ['--pbkdf', 'pbkdf2'] : [];
    execFileSync(
      'cryptsetup',
      ['luksFormat', '--batch-mode', '--type', type, ...pbkdf, '--pbkdf-force-iterations', '1000', '--uuid', UUID, ...label, '--key-file', key, file],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    await using reader = await openFileReader(file);
    expect(await probeVolume(reader)).toEqual({
      type: 'luks',
      uuid: UUID,
      detail: type === 'luks1' ? 'LUKS1' : 'LUKS2',
      ...(type === 'luks2' ? { label: 'vault' } : {}),
    });
  });
});
