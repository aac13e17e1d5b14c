import { describe, expect, it } from 'vitest';
import { checkKdfCosts, deriveKey, KDF_LIMITS } from '../../../../src/fs/luks/kdf.js';
import type { Argon2 } from '../../../../src/fs/luks/header.js';
import { refusal } from '../../../helpers/refusal.js';

const GIB = 2 ** 30;
const salt = new Uint8Array(32).fill(1);
const argon = (over: Partial<Argon2>): Argon2 => ({ type: 'argon2id', time: 4, memoryKib: 1024 * 1024, cpus: 4, salt, ...over });

describe('checkKdfCosts', () => {
  it("accepts cryptsetup's own defaults (argon2id, 1 GiB, 4 lanes; PBKDF2 at 2 s)", () => {
    expect(() => checkKdfCosts('slot 0', argon({}), 24 * GIB)).not.toThrow();
    expect(() => checkKdfCosts('slot 0', { type: 'pbkdf2', hash: 'sha256', iterations: 8_000_000, salt }, 24 * GIB)).not.toThrow();
  });

  it('refuses 100 GiB of Argon2 memory, and more than half of this machine', () => {
    expect(refusal(() => checkKdfCosts('slot 0', argon({ memoryKib: 100 * 1024 * 1024 }), 24 * GIB)).message)
      .toBe('slot 0: argon2id asks for 102400 MiB of memory (at most 4096 MiB); refused as absurd');
    expect(refusal(() => checkKdfCosts('slot 0', argon({ memoryKib: 2 * 1024 * 1024 }), 2 * GIB)).message)
      .toBe('slot 0: argon2id asks for 2048 MiB of memory (at most 1024 MiB); refused as absurd');
  });

  it('refuses endless passes, too many lanes and endless PBKDF2', () => {
    expect(refusal(() => checkKdfCosts('s', argon({ time: 0xffffffff }), 24 * GIB)).message).toMatch(/asks for 4294967295 passes over 1024 MiB/);
    expect(refusal(() => checkKdfCosts('s', argon({ cpus: 64 }), 24 * GIB)).message).toMatch(/64 lanes \(at most 4\)/);
    const iterations = KDF_LIMITS.pbkdf2MaxIterations + 1;
    expect(refusal(() => checkKdfCosts('s', { type: 'pbkdf2', hash: 'sha256', iterations, salt })).message).toMatch(/PBKDF2 asks for 268435457 iterations/);
  });
});

// Argon2i/Argon2id output is checked against cryptsetup itself in test/integration/luks-header.test.ts.
describe('deriveKey', () => {
  it('derives PBKDF2-HMAC-SHA256 as RFC 7914 §11 gives it', async () => {
    // RFC 7914 §11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1, dkLen=64).
    const key = await deriveKey('s', { type: 'pbkdf2', hash: 'sha256', iterations: 1, salt: new TextEncoder().encode('salt') }, new TextEncoder().encode('passwd'), 64);
    expect(Buffer.from(key).toString('hex').slice(0, 32)).toBe('55ac046e56e3089fec1691c22544b605');
  });
});
