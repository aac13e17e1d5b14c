/**
 * Sector decryption as dm-crypt does it, through node:crypto (OpenSSL): the cipher spec
 * "aes-MODE-IVGEN" of a LUKS header, a key, and sectors numbered for the IV generator.
 * Supported: AES in XTS or CBC mode with the plain, plain64 or essiv:sha256 IV generators
 * (cryptsetup's defaults: aes-xts-plain64 since 1.6, aes-cbc-essiv:sha256 before).
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { SparsifyError } from '../../errors.js';

/**
 * Decrypts whole sectors; `firstIvSector` is the IV generator's number of the first one, and
 * each next sector's is `ivStep` more (dm-crypt counts IVs in 512-byte units: 8 per 4 KiB sector).
 */
export interface SectorCipher {
  readonly spec: string;
  decrypt(ciphertext: Uint8Array, firstIvSector: number, sectorBytes: number, ivStep?: number): Uint8Array;
}

type IvGen = (sector: number) => Uint8Array;

function plainIv(bytes: 4 | 8): IvGen {
  return (sector) => {
    const iv = new Uint8Array(16);
    const view = new DataView(iv.buffer);
    // plain: the low 32 bits of the sector number; plain64: all 64, little-endian.
    view.setUint32(0, sector % 2 ** 32, true);
    if (bytes === 8) view.setUint32(4, Math.floor(sector / 2 ** 32), true);
    return iv;
  };
}

/** ESSIV (dm-crypt): IV = AES-ECB under hash(key) of the plain64 sector number. */
function essivIv(hash: string, key: Uint8Array): IvGen {
  const salt = createHash(hash).update(key).digest();
  const plain64 = plainIv(8);
  return (sector) => {
    const ecb = createCipheriv(`aes-${salt.length * 8}-ecb`, salt, null).setAutoPadding(false);
    return new Uint8Array(Buffer.concat([ecb.update(plain64(sector)), ecb.final()]));
  };
}

/** The decipher for `spec` with `key`, or UNSUPPORTED naming the spec when Node cannot do it. */
export function sectorCipher(where: string, spec: string, key: Uint8Array): SectorCipher {
  const unsupported = () => new SparsifyError('UNSUPPORTED', `${where}: cipher ${spec} with a ${key.length * 8}-bit key is not supported`, {
    hint: 'only AES in XTS or CBC mode with plain, plain64 or essiv:sha256 IVs can be read; the volume is copied as it is',
  });
  const m = /^aes-(xts|cbc)-(plain|plain64|essiv:(sha256))$/.exec(spec.toLowerCase());
  if (!m) throw unsupported();
  const [, mode, ivName, essivHash] = m;
  const aesBits = mode === 'xts' ? (key.length * 8) / 2 : key.length * 8;
  if (!(mode === 'xts' ? [128, 256] : [128, 192, 256]).includes(aesBits)) throw unsupported();
  const algorithm = `aes-${aesBits}-${mode}`;
  const iv: IvGen = essivHash ? essivIv(essivHash, key) : plainIv(ivName === 'plain' ? 4 : 8);
  return {
    spec,
    decrypt(ciphertext, firstIvSector, sectorBytes, ivStep = 1) {
      if (ciphertext.length % sectorBytes !== 0) throw new RangeError(`${ciphertext.length} bytes are not whole ${sectorBytes}-byte sectors`);
      const out = new Uint8Array(ciphertext.length);
      for (let at = 0, n = firstIvSector; at < ciphertext.length; at += sectorBytes, n += ivStep) {
        const decipher = createDecipheriv(algorithm, key, iv(n)).setAutoPadding(false);
        const sector = ciphertext.subarray(at, at + sectorBytes);
        out.set(decipher.update(sector), at);
        decipher.final();
      }
      return out;
    },
  };
}
