import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseKeySelector } from '../../../src/keys/selector.js';
import { refusal } from '../../helpers/refusal.js';

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe('parseKeySelector', () => {
  it('takes ID:key:STRING and ID:file:FILE with a device, a UUID or all', () => {
    const k = parseKeySelector('/dev/sda2:key:pass word');
    expect(k.id).toBe('/dev/sda2');
    expect(k.source.kind === 'string' && text(k.source.secret.bytes())).toBe('pass word');
    expect(parseKeySelector('all:file:/root/key.txt')).toEqual({ id: 'all', source: { kind: 'file', path: '/root/key.txt' } });
    expect(parseKeySelector('3866a5ba-723d-40f5-a1dc-d7be3cc680a3:file:k').id).toBe('3866a5ba-723d-40f5-a1dc-d7be3cc680a3');
  });

  it('lets a backslash escape colons, so keys may hold them', () => {
    const k = parseKeySelector('/dev/VG/LV:key:a\\:b\\\\c');
    expect(k.source.kind === 'string' && text(k.source.secret.bytes())).toBe('a:b\\c');
    expect(refusal(() => parseKeySelector('/dev/sda2:key:a:b')).code).toBe('USAGE');
  });

  it('refuses malformed selectors without repeating them', () => {
    for (const bad of ['', 'secret', '/dev/sda1:key', '/dev/sda1:password:secret', ':key:secret', '/dev/sda1:file:']) {
      const error = refusal(() => parseKeySelector(bad));
      expect(error.code).toBe('USAGE');
      if (bad.includes('secret')) expect(error.message).not.toContain('secret');
    }
  });

  it('says Clevis is not supported', () => {
    expect(refusal(() => parseKeySelector('all:clevis'))).toMatchObject({ code: 'UNSUPPORTED', message: '--key all:clevis: Clevis/Tang unlocking is not supported' });
  });

  it('never shows the key through String, JSON or inspect', () => {
    const k = parseKeySelector('/dev/sda2:key:hunter2');
    const shown = [String(k.source.kind === 'string' && k.source.secret), JSON.stringify(k), inspect(k, { depth: 9 }), `${JSON.stringify({ k })}`];
    for (const s of shown) expect(s).not.toContain('hunter2');
  });
});
