/**
 * The LUKS1 header: "LUKS On-Disk Format Specification" version 1.2.3, §2 (the partition
 * header, big-endian) and §2.4 (key slots). 592 bytes at byte 0 of the volume.
 */
import { cString, viewOf } from '../../binary/bytes.js';
import { badLuks, hashName, type LuksHeader, type LuksKeyslot } from './header.js';

/** Bytes of the LUKS1 partition header (8 key slots of 48 bytes from offset 208). */
export const LUKS1_HEADER_BYTES = 592;
const SECTOR_BYTES = 512; // LUKS1 counts offsets in 512-byte sectors (§2.1)
const F = {
  cipherName: 8, cipherMode: 40, hashSpec: 72, payloadOffset: 104, keyBytes: 108,
  mkDigest: 112, mkDigestSalt: 132, mkDigestIter: 164, uuid: 168, keyslots: 208,
} as const;
const SLOT = { active: 0, iterations: 4, salt: 8, keyMaterialOffset: 40, stripes: 44, bytes: 48 } as const;
const SLOT_COUNT = 8;
const SLOT_ACTIVE = 0x00ac71f3;
const SLOT_INACTIVE = 0x0000dead;
const DIGEST_BYTES = 20;
const SALT_BYTES = 32;
/** The longest key a LUKS1 header can describe sensibly (AES-256-XTS is 64). */
const MAX_KEY_BYTES = 512;
/** cryptsetup always writes 4000 stripes; more would only make the key material area huge. */
const MAX_STRIPES = 4000;

/** Decodes a LUKS1 header; `volumeBytes` bounds every offset it gives. */
export function parseLuks1Header(bytes: Uint8Array, volumeBytes: number): LuksHeader {
  const where = 'LUKS1 header at byte 0';
  if (bytes.length < LUKS1_HEADER_BYTES) throw badLuks(where, `truncated (${bytes.length} of ${LUKS1_HEADER_BYTES} bytes)`);
  const view = viewOf(bytes);
  const hash = cString(bytes, F.hashSpec, 32);
  hashName(where, hash);
  const keyBytes = view.getUint32(F.keyBytes, false);
  if (keyBytes < 16 || keyBytes > MAX_KEY_BYTES) throw badLuks(where, `key length ${keyBytes} bytes`);
  const encryption = `${cString(bytes, F.cipherName, 32)}-${cString(bytes, F.cipherMode, 32)}`;
  const payloadBytes = view.getUint32(F.payloadOffset, false) * SECTOR_BYTES;
  if (payloadBytes > volumeBytes) throw badLuks(where, `payload offset ${payloadBytes} is beyond the ${volumeBytes}-byte volume`);

  const keyslots: LuksKeyslot[] = [];
  let headerBytes = LUKS1_HEADER_BYTES;
  for (let i = 0; i < SLOT_COUNT; i++) {
    const at = F.keyslots + i * SLOT.bytes;
    const active = view.getUint32(at + SLOT.active, false);
    if (active === SLOT_INACTIVE) continue;
    const slotWhere = `${where}, key slot ${i}`;
    if (active !== SLOT_ACTIVE) throw badLuks(slotWhere, `state 0x${active.toString(16)} is neither active nor inactive`);
    const stripes = view.getUint32(at + SLOT.stripes, false);
    if (stripes < 1 || stripes > MAX_STRIPES) throw badLuks(slotWhere, `${stripes} anti-forensic stripes`);
    const offsetBytes = view.getUint32(at + SLOT.keyMaterialOffset, false) * SECTOR_BYTES;
    const sizeBytes = Math.ceil((keyBytes * stripes) / SECTOR_BYTES) * SECTOR_BYTES;
    if (offsetBytes < LUKS1_HEADER_BYTES || offsetBytes + sizeBytes > payloadBytes) {
      throw badLuks(slotWhere, `key material ${offsetBytes}+${sizeBytes} is not between the header and the payload`);
    }
    headerBytes = Math.max(headerBytes, offsetBytes + sizeBytes);
    keyslots.push({
      id: String(i),
      keyBytes,
      kdf: { type: 'pbkdf2', hash, iterations: view.getUint32(at + SLOT.iterations, false), salt: Uint8Array.from(bytes.subarray(at + SLOT.salt, at + SLOT.salt + SALT_BYTES)) },
      af: { stripes, hash },
      area: { offsetBytes, sizeBytes, encryption, keyBytes },
      priority: 1,
    });
  }
  return {
    version: 1,
    uuid: cString(bytes, F.uuid, 40),
    label: '',
    keyslots,
    digests: [{
      keyslots: keyslots.map((s) => s.id),
      hash,
      iterations: view.getUint32(F.mkDigestIter, false),
      salt: Uint8Array.from(bytes.subarray(F.mkDigestSalt, F.mkDigestSalt + SALT_BYTES)),
      digest: Uint8Array.from(bytes.subarray(F.mkDigest, F.mkDigest + DIGEST_BYTES)),
    }],
    segment: { offsetBytes: payloadBytes, sizeBytes: undefined, ivTweak: 0, encryption, sectorBytes: SECTOR_BYTES },
    headerBytes: Math.max(headerBytes, payloadBytes),
  };
}
