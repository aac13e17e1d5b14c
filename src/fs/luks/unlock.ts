/**
 * Opening a LUKS volume with a passphrase or key file contents: each key slot in priority order
 * derives its key, decrypts its AF-split material, merges it, and the candidate volume key is
 * accepted only when the header's digest of it matches (LUKS1 spec §2.4, LUKS2 §3.2–3.3).
 */
import { pbkdf2, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { BlockReader } from '../../disk/types.js';
import { SparsifyError } from '../../errors.js';
import { afMerge } from './af.js';
import { sectorCipher } from './cipher.js';
import { hashName, type LuksDigest, type LuksHeader, type LuksKeyslot } from './header.js';
import { checkKdfCosts, deriveKey } from './kdf.js';

const pbkdf2Async = promisify(pbkdf2);
/** Key slot areas are encrypted in 512-byte sectors numbered from 0 at the area's start. */
const AREA_SECTOR_BYTES = 512;

/** A recovered volume key, and the key slot that opened it. */
export interface UnlockedVolume {
  readonly volumeKey: Uint8Array;
  readonly keyslot: string;
}

/** Whether `candidate` is the volume key `digest` describes. */
export async function matchesDigest(where: string, digest: LuksDigest, candidate: Uint8Array): Promise<boolean> {
  checkKdfCosts(where, { type: 'pbkdf2', hash: digest.hash, iterations: digest.iterations, salt: digest.salt });
  const got = await pbkdf2Async(candidate, digest.salt, digest.iterations, digest.digest.length, hashName(where, digest.hash));
  return timingSafeEqual(got, digest.digest);
}

/** The candidate volume key that `secret` gives through one key slot (not yet checked). */
export async function readSlotKey(reader: BlockReader, slot: LuksKeyslot, secret: Uint8Array, where: string): Promise<Uint8Array> {
  const slotWhere = `${where}, key slot ${slot.id}`;
  const cipher = sectorCipher(slotWhere, slot.area.encryption, await deriveKey(slotWhere, slot.kdf, secret, slot.area.keyBytes));
  const materialBytes = Math.ceil((slot.keyBytes * slot.af.stripes) / AREA_SECTOR_BYTES) * AREA_SECTOR_BYTES;
  if (materialBytes > slot.area.sizeBytes) throw new RangeError(`${slotWhere}: key material does not fit its area`);
  const encrypted = await reader.read(slot.area.offsetBytes, materialBytes);
  const material = cipher.decrypt(encrypted, 0, AREA_SECTOR_BYTES);
  return afMerge(material, slot.keyBytes, slot.af.stripes, hashName(slotWhere, slot.af.hash));
}

/** Key slots worth trying, preferred first; priority 0 ("ignore") slots are left out as cryptsetup does. */
function slotsInOrder(header: LuksHeader): LuksKeyslot[] {
  return header.keyslots.filter((s) => s.priority > 0).sort((a, b) => b.priority - a.priority);
}

/**
 * Finds the key slot that one of `secrets` opens and returns the verified volume key. Throws
 * BAD_KEY ("no key slot of NAME opens with the given key") when none does.
 */
export async function unlockLuks(
  reader: BlockReader,
  header: LuksHeader,
  secrets: readonly Uint8Array[],
  volumeName: string,
  signal?: AbortSignal,
): Promise<UnlockedVolume> {
  const where = `LUKS${header.version} volume ${volumeName}`;
  for (const secret of secrets) {
    for (const slot of slotsInOrder(header)) {
      signal?.throwIfAborted();
      const digest = header.digests.find((d) => d.keyslots.includes(slot.id));
      if (!digest) continue;
      const candidate = await readSlotKey(reader, slot, secret, where);
      if (await matchesDigest(where, digest, candidate)) return { volumeKey: candidate, keyslot: slot.id };
    }
  }
  throw new SparsifyError('BAD_KEY', `no key slot of ${volumeName} opens with the given key`, {
    hint: `check the --key given for ${volumeName}`,
  });
}
