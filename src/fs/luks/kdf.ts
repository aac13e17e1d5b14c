/**
 * Key derivation for LUKS key slots and digests: PBKDF2 through node:crypto, Argon2i/Argon2id
 * through the `argon2` package (the reference C implementation as a Node addon: Node 20's crypto
 * has no Argon2). Both run on libuv's thread pool, so a derivation never blocks the event loop.
 *
 * The costs come from the header, which is untrusted: a hostile image could ask for 100 GiB of
 * Argon2 memory or 2^32 PBKDF2 rounds. LIMITS refuses such headers before anything is allocated.
 */
import { pbkdf2 } from 'node:crypto';
import { totalmem } from 'node:os';
import { promisify } from 'node:util';
import { SparsifyError } from '../../errors.js';
import { hashName, type LuksKdf } from './header.js';

const pbkdf2Async = promisify(pbkdf2);

/**
 * The costs sparsify pays at most for one derivation.
 * - Argon2 memory 32 KiB … 4 GiB and 1 … 4 lanes: the bounds libcryptsetup itself enforces
 *   (crypt_pbkdf_get_limits), so every header cryptsetup writes passes; and at most half the
 *   memory of this machine (cryptsetup takes half of free memory since 2.6.1 for the same reason).
 * - Argon2 time × memory ≤ 2^29 KiB-passes (512 GiB of memory traffic: 1 GiB × 512 passes, a few
 *   minutes): cryptsetup's 2 s benchmark gives 4–10 passes of 1 GiB, so a hundredfold
 *   --iter-time still fits; libcryptsetup's own bound (2^32 − 1 passes) would be days.
 * - PBKDF2 at most 2^28 iterations (~1–2 min of SHA-256 here): cryptsetup's 2 s benchmark gives
 *   1–8 million; again a factor 30 of headroom for a long --iter-time.
 */
export const KDF_LIMITS = {
  argon2MinMemoryKib: 32,
  argon2MaxMemoryKib: 4 * 1024 * 1024,
  argon2MaxCpus: 4,
  argon2MaxKibPasses: 2 ** 29,
  pbkdf2MaxIterations: 2 ** 28,
} as const;

function absurd(where: string, what: string): SparsifyError {
  return new SparsifyError('BAD_IMAGE', `${where}: ${what}; refused as absurd`, {
    hint: 'a header cryptsetup made never asks for this; the volume is copied as it is',
  });
}

/** Throws BAD_IMAGE when the KDF costs exceed KDF_LIMITS; call it before deriving anything. */
export function checkKdfCosts(where: string, kdf: LuksKdf, machineBytes = totalmem()): void {
  if (kdf.type === 'pbkdf2') {
    hashName(where, kdf.hash);
    if (kdf.iterations > KDF_LIMITS.pbkdf2MaxIterations) {
      throw absurd(where, `PBKDF2 asks for ${kdf.iterations} iterations (at most ${KDF_LIMITS.pbkdf2MaxIterations})`);
    }
    return;
  }
  const mib = (kib: number) => `${Math.round(kib / 1024)} MiB`;
  const maxKib = Math.min(KDF_LIMITS.argon2MaxMemoryKib, Math.floor(machineBytes / 2 / 1024));
  if (kdf.memoryKib < KDF_LIMITS.argon2MinMemoryKib || kdf.memoryKib > maxKib) {
    throw absurd(where, `${kdf.type} asks for ${mib(kdf.memoryKib)} of memory (at most ${mib(maxKib)})`);
  }
  if (kdf.cpus > KDF_LIMITS.argon2MaxCpus) throw absurd(where, `${kdf.type} asks for ${kdf.cpus} lanes (at most ${KDF_LIMITS.argon2MaxCpus})`);
  if (kdf.time * kdf.memoryKib > KDF_LIMITS.argon2MaxKibPasses) {
    throw absurd(where, `${kdf.type} asks for ${kdf.time} passes over ${mib(kdf.memoryKib)}`);
  }
}

/** Derives `keyBytes` from `secret` with the header's KDF (costs checked first). */
export async function deriveKey(where: string, kdf: LuksKdf, secret: Uint8Array, keyBytes: number): Promise<Uint8Array> {
  checkKdfCosts(where, kdf);
  if (kdf.type === 'pbkdf2') {
    return new Uint8Array(await pbkdf2Async(secret, kdf.salt, kdf.iterations, keyBytes, hashName(where, kdf.hash)));
  }
  // A native addon, loaded (dlopen) only when a key slot asks for Argon2, not by every run.
  const { default: argon2 } = await import('argon2');
  const raw = await argon2.hash(Buffer.from(secret), {
    raw: true,
    salt: Buffer.from(kdf.salt),
    type: kdf.type === 'argon2i' ? argon2.argon2i : argon2.argon2id,
    memoryCost: kdf.memoryKib,
    timeCost: kdf.time,
    parallelism: kdf.cpus,
    hashLength: keyBytes,
    version: 0x13, // LUKS2 uses Argon2 version 1.3 (RFC 9106)
  });
  return new Uint8Array(raw);
}
