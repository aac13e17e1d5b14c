/**
 * Opening one LUKS volume for the pass: its header, the keys the user gave for it (by name,
 * UUID or `all`), the key slot one of them opens, and the decrypted view. No key is a value,
 * not an error: the volume is then copied as it is with a warning naming --key.
 */
import type { BlockReader } from '../../disk/types.js';
import type { KeyStore } from '../../keys/key-store.js';
import { sectorCipher } from './cipher.js';
import { openDecryptedView, type DecryptedView } from './decrypted-view.js';
import type { LuksHeader } from './header.js';
import { readLuksHeader } from './read-header.js';
import { unlockLuks } from './unlock.js';

export type OpenedLuks =
  | { readonly opened: true; readonly header: LuksHeader; readonly view: DecryptedView; readonly keyslot: string }
  | { readonly opened: false; readonly header: LuksHeader; readonly reason: string };

/**
 * Opens the LUKS volume `reader` covers with the keys `keys` holds for it. Throws BAD_KEY when
 * keys were given and none opens a slot, BAD_IMAGE or UNSUPPORTED for a header it cannot use.
 * `derive` wraps the key derivation (seconds, with the header's Argon2 costs), so a caller can
 * show it as a task while it runs.
 */
export async function openLuksVolume(
  reader: BlockReader,
  volumeName: string,
  keys: KeyStore,
  signal?: AbortSignal,
  derive: <T>(header: LuksHeader, fn: () => Promise<T>) => Promise<T> = (_header, fn) => fn(),
): Promise<OpenedLuks> {
  const header = await readLuksHeader(reader);
  const secrets = await keys.keysFor(volumeName, header.uuid);
  if (secrets.length === 0) {
    return { opened: false, header, reason: `encrypted (LUKS${header.version}) and no --key was given for it` };
  }
  // A cipher Node cannot decrypt is known before any key is derived (seconds of Argon2 for nothing).
  const keyBytes = header.keyslots[0]?.keyBytes;
  if (keyBytes) sectorCipher(`LUKS${header.version} volume ${volumeName}`, header.segment.encryption, new Uint8Array(keyBytes));
  const unlocked = await derive(header, () => unlockLuks(reader, header, secrets.map((s) => s.bytes()), volumeName, signal));
  return { opened: true, header, view: openDecryptedView(reader, header, unlocked.volumeKey, volumeName), keyslot: unlocked.keyslot };
}
