/**
 * A LUKS volume opened with its volume key, as a BlockReader of the plaintext: each read
 * fetches and decrypts only the encryption sectors it covers, so the layout, LVM and
 * filesystem readers run inside as on any volume and the data they do not ask for is never
 * decrypted. Ranges found inside map back to whole ciphertext sectors of the volume.
 */
import type { BlockReader } from '../../disk/types.js';
import { badLuks, type LuksHeader } from './header.js';
import { sectorCipher } from './cipher.js';

/**
 * LUKS2 activates dm-crypt without iv_large_sectors (that flag is plain mode's): the IV counts
 * 512-byte units whatever the encryption sector size, and iv_tweak is in the same units.
 */
const IV_UNIT_BYTES = 512;

/** The plaintext of a LUKS volume, and where its sectors lie in the ciphertext. */
export interface DecryptedView extends BlockReader {
  /** First byte of the encrypted payload in the LUKS volume. */
  readonly payloadOffsetBytes: number;
  readonly sectorBytes: number;
  /**
   * The whole encryption sectors inside plaintext [offset, offset+length), as a byte range of
   * the LUKS volume; undefined when the range holds no whole sector.
   */
  cipherRangeOf(offsetBytes: number, lengthBytes: number): { offsetBytes: number; lengthBytes: number } | undefined;
}

/** Opens the plaintext view of the volume `reader` covers, given its verified volume key. */
export function openDecryptedView(reader: BlockReader, header: LuksHeader, volumeKey: Uint8Array, volumeName: string): DecryptedView {
  const { segment } = header;
  const where = `LUKS${header.version} volume ${volumeName}`;
  const cipher = sectorCipher(where, segment.encryption, volumeKey);
  const sectorBytes = segment.sectorBytes;
  const available = reader.sizeBytes - segment.offsetBytes;
  const payloadBytes = Math.floor(Math.min(segment.sizeBytes ?? available, available) / sectorBytes) * sectorBytes;
  if (payloadBytes < 0) throw badLuks(where, 'the payload starts beyond the end of the volume');
  const ivPerSector = sectorBytes / IV_UNIT_BYTES;
  return {
    sizeBytes: payloadBytes,
    payloadOffsetBytes: segment.offsetBytes,
    sectorBytes,
    async read(offsetBytes, lengthBytes) {
      if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > payloadBytes) {
        throw new RangeError(`read ${offsetBytes}+${lengthBytes} is outside the ${payloadBytes}-byte plaintext of ${volumeName}`);
      }
      const first = Math.floor(offsetBytes / sectorBytes);
      const end = Math.ceil((offsetBytes + lengthBytes) / sectorBytes);
      const ciphertext = await reader.read(segment.offsetBytes + first * sectorBytes, (end - first) * sectorBytes);
      const plaintext = cipher.decrypt(ciphertext, segment.ivTweak + first * ivPerSector, sectorBytes, ivPerSector);
      const skip = offsetBytes - first * sectorBytes;
      return plaintext.subarray(skip, skip + lengthBytes);
    },
    cipherRangeOf(offsetBytes, lengthBytes) {
      const start = Math.ceil(offsetBytes / sectorBytes) * sectorBytes;
      const end = Math.floor(Math.min(offsetBytes + lengthBytes, payloadBytes) / sectorBytes) * sectorBytes;
      return end > start ? { offsetBytes: segment.offsetBytes + start, lengthBytes: end - start } : undefined;
    },
  };
}
