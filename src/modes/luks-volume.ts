/**
 * A LUKS volume in the volume pass: opened with the run's keys, its free space read through the
 * decrypted view and given to the planner as a free map of whole ciphertext sectors, so the map
 * engine skips them (copy) or discards them (in place) like any other free map. The header and
 * key slots are protected ranges (invariant 7). No key, or a header sparsify cannot use, is an
 * untrusted map with the reason: the volume is copied as it is with a warning.
 */
import type { RunContext } from '../context.js';
import { quietSteps, type EngineSteps } from '../engines/engine.js';
import { ExtentSet } from '../disk/extent-set.js';
import { sliceReader, type BlockReader } from '../disk/types.js';
import { isSparsifyError } from '../errors.js';
import { readEncryptedFreeSpace } from '../fs/luks/inner-free.js';
import type { LuksHeader } from '../fs/luks/header.js';
import { openLuksVolume } from '../fs/luks/open.js';
import type { FreeMap } from '../fs/types.js';
import type { KeyStore } from '../keys/key-store.js';
import type { Volume } from '../layout/types.js';

/** What the pass learns about one LUKS volume: its free map and the bytes never to touch (disk offsets). */
export interface LuksVolumeFacts {
  readonly freeMap: FreeMap;
  readonly structures: ExtentSet;
}

/** "argon2id, 32 MiB, 4 passes" of the first key slot: what the derivation costs. */
function kdfSummary(header: LuksHeader): string {
  const kdf = header.keyslots[0]?.kdf;
  if (!kdf) return 'no key slot';
  return kdf.type === 'pbkdf2' ? `PBKDF2-${kdf.hash}, ${kdf.iterations} iterations` : `${kdf.type}, ${Math.round(kdf.memoryKib / 1024)} MiB, ${kdf.time} passes`;
}

const NO_KEYS: KeyStore = { keysFor: () => Promise.resolve([]) };

/** The task shown while the key of `volume` is derived, e.g. "/dev/sda2: deriving the LUKS2 key (argon2id, 1024 MiB, 4 passes)". */
function derivingTitle(volumeName: string, header: LuksHeader): string {
  return `${volumeName}: deriving the LUKS${header.version} key (${kdfSummary(header)})`;
}

/**
 * Opens the LUKS volume `volume` of `device` with `keys` and reads the free space inside. The key
 * derivation runs as a step of `steps` (a task in the task list, a status message, a report phase).
 */
export async function readLuksVolume(
  ctx: RunContext,
  device: BlockReader,
  volume: Volume,
  keys: KeyStore | undefined,
  steps: EngineSteps = quietSteps,
): Promise<LuksVolumeFacts> {
  const reader = sliceReader(device, volume.offsetBytes, volume.sizeBytes);
  let opened;
  try {
    const derive = <T>(header: LuksHeader, fn: () => Promise<T>) => steps.step(derivingTitle(volume.name, header), fn, 'LUKS key derivation');
    opened = await openLuksVolume(reader, volume.name, keys ?? NO_KEYS, ctx.signal, derive);
  } catch (err) {
    if (!isSparsifyError(err, 'BAD_IMAGE', 'UNSUPPORTED')) throw err; // BAD_KEY ends the run: the user gave a wrong key
    return { freeMap: { trusted: false, reason: err.message }, structures: ExtentSet.empty };
  }
  const structures = ExtentSet.of(volume.offsetBytes, Math.min(opened.header.headerBytes, volume.sizeBytes));
  if (!opened.opened) return { freeMap: { trusted: false, reason: opened.reason }, structures };
  const found = await readEncryptedFreeSpace(opened.view, volume.name);
  for (const note of found.notes) ctx.log.warn(`${volume.name}: ${note}`);
  const inside = found.inner.map((i) => `${i.volume.name} ${i.fs.type}${i.freeMap?.trusted === false ? ` (map not trusted: ${i.freeMap.reason})` : ''}`);
  ctx.log.debug(`${volume.name}: LUKS${opened.header.version} opened with key slot ${opened.keyslot}; inside: ${inside.join(', ')}`);
  return {
    freeMap: {
      trusted: true,
      free: found.cipherFree,
      unitBytes: opened.view.sectorBytes,
      counterFreeBytes: found.cipherFree.totalBytes,
      detail: `LUKS${opened.header.version}: ciphertext of the free blocks of ${[
        ...found.inner.filter((i) => i.freeMap?.trusted).map((i) => i.volume.name),
        ...(found.vgName ? [`VG ${found.vgName} free extents`] : []),
      ].join(', ')}`, // the engine's "Handled" says how much was dropped and that the guest reads noise there
    },
    structures,
  };
}
