/**
 * What sparsify needs from a LUKS1 or LUKS2 header, in one shape for both versions: the key
 * slots (KDF, anti-forensic split, where the encrypted key material lies), the volume-key
 * digests, and the one data segment. Byte offsets are relative to the start of the LUKS volume.
 */
import { SparsifyError } from '../../errors.js';

/** PBKDF2 (RFC 8018) with an HMAC hash as cryptsetup names it ("sha256", "sha1"). */
export interface Pbkdf2 {
  readonly type: 'pbkdf2';
  readonly hash: string;
  readonly iterations: number;
  readonly salt: Uint8Array;
}

/** Argon2 (RFC 9106) as LUKS2 stores it: `time` passes over `memoryKib` KiB in `cpus` lanes. */
export interface Argon2 {
  readonly type: 'argon2i' | 'argon2id';
  readonly time: number;
  readonly memoryKib: number;
  readonly cpus: number;
  readonly salt: Uint8Array;
}

export type LuksKdf = Pbkdf2 | Argon2;

/** One active key slot: the passphrase → KDF → key that decrypts the AF-split volume key. */
export interface LuksKeyslot {
  readonly id: string;
  /** Length of the volume key it holds. */
  readonly keyBytes: number;
  readonly kdf: LuksKdf;
  /** Anti-forensic split (LUKS1 spec §2.4): number of stripes and the diffusion hash. */
  readonly af: { readonly stripes: number; readonly hash: string };
  /** The encrypted split key material, and the cipher and key length that encrypt it. */
  readonly area: { readonly offsetBytes: number; readonly sizeBytes: number; readonly encryption: string; readonly keyBytes: number };
  /** LUKS2 priority: 0 ignore unless named, 1 normal, 2 preferred; LUKS1 slots are all 1. */
  readonly priority: number;
}

/** A PBKDF2 digest of the volume key, which tells a right candidate key from a wrong one. */
export interface LuksDigest {
  readonly keyslots: readonly string[];
  readonly hash: string;
  readonly iterations: number;
  readonly salt: Uint8Array;
  readonly digest: Uint8Array;
}

/** The encrypted data: plaintext sector n lies at offsetBytes + n·sectorBytes, IV n + ivTweak. */
export interface LuksSegment {
  readonly offsetBytes: number;
  /** Undefined for "dynamic": up to the end of the volume. */
  readonly sizeBytes: number | undefined;
  readonly ivTweak: number;
  readonly encryption: string;
  readonly sectorBytes: number;
}

export interface LuksHeader {
  readonly version: 1 | 2;
  readonly uuid: string;
  readonly label: string;
  readonly keyslots: readonly LuksKeyslot[];
  readonly digests: readonly LuksDigest[];
  readonly segment: LuksSegment;
  /** Bytes from the start of the volume that belong to the header (binary headers, JSON, key slots). */
  readonly headerBytes: number;
}

/** The decoder's error: the structure, the offset, and what is wrong (images are untrusted). */
export function badLuks(where: string, what: string): SparsifyError {
  return new SparsifyError('BAD_IMAGE', `${where}: ${what}`, {
    hint: 'the LUKS header is damaged or not one cryptsetup wrote; the volume is copied as it is',
  });
}

/** Hash names a LUKS header may give, as node:crypto spells them. */
const HASHES: Readonly<Record<string, string>> = {
  sha1: 'sha1', sha224: 'sha224', sha256: 'sha256', sha384: 'sha384', sha512: 'sha512',
  ripemd160: 'ripemd160', 'sha3-256': 'sha3-256', 'sha3-512': 'sha3-512',
};

/** The node:crypto name of a LUKS hash spec, or a BAD_IMAGE/UNSUPPORTED error naming it. */
export function hashName(where: string, spec: string): string {
  const name = HASHES[spec.toLowerCase()];
  if (!name) throw new SparsifyError('UNSUPPORTED', `${where}: hash "${spec}" is not supported`);
  return name;
}
