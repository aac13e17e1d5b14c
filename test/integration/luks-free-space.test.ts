/**
 * Free space inside LUKS volumes made by cryptsetup in the appliance, found through the
 * decrypted view with the keys as the command line gives them, and mapped back to ciphertext:
 * the totals must be what dumpe2fs and vgs said inside the opened mappings.
 */
import { Readable } from 'node:stream';
import { beforeAll, expect, it } from 'vitest';
import { sliceReader, type BlockReader } from '../../src/disk/types.js';
import { isSparsifyError } from '../../src/errors.js';
import { readEncryptedFreeSpace } from '../../src/fs/luks/inner-free.js';
import { openLuksVolume } from '../../src/fs/luks/open.js';
import { openKeyStore } from '../../src/keys/key-store.js';
import { parseKeySelector } from '../../src/keys/selector.js';
import { readLayout } from '../../src/layout/read-layout.js';
import { openFileReader, type FileReader } from '../helpers/file-reader.js';
import { buildLuksFixture, LUKS_LVM_VOLUME, LUKS_VOLUMES, type LuksTruth } from '../helpers/luks-fixture.js';
import { describeIntegration } from '../helpers/require.js';

const noStdin = () => Readable.from([]);

describeIntegration('free space inside LUKS volumes, through the decrypted view', { tools: ['guestfish'] }, () => {
  let truth: Map<string, LuksTruth>;
  let disk: FileReader;
  const volumes = new Map<number, BlockReader>();

  beforeAll(async () => {
    const built = await buildLuksFixture();
    truth = built.truth;
    disk = await openFileReader(built.imagePath);
    for (const v of (await readLayout(disk)).volumes) volumes.set(v.partitionNumber!, sliceReader(disk, v.offsetBytes, v.sizeBytes));
    return () => disk[Symbol.asyncDispose]();
  }, 600_000);

  for (const v of LUKS_VOLUMES) {
    it(`${v.name}: the ext4 free blocks dumpe2fs counts become whole ciphertext sectors after the header`, async () => {
      const name = `/dev/sda${v.partition}`;
      const keys = openKeyStore({ selectors: [parseKeySelector(`${name}:key:${v.passphrase}`)], fromStdin: false }, noStdin());
      const opened = await openLuksVolume(volumes.get(v.partition)!, name, keys);
      if (!opened.opened) throw new Error(opened.reason);
      const found = await readEncryptedFreeSpace(opened.view, name);
      expect(found.inner.map((i) => [i.volume.name, i.fs.type, i.freeMap?.trusted])).toEqual([[name, 'ext4', true]]);
      const want = truth.get(v.name)!.extFreeBytes;
      expect(found.inner[0]!.freeMap).toMatchObject({ counterFreeBytes: want });
      expect(found.cipherFree.totalBytes).toBe(want);
      for (const r of found.cipherFree.ranges) {
        expect(r.start).toBeGreaterThanOrEqual(opened.header.segment.offsetBytes);
        expect([r.start % v.sectorBytes, r.end % v.sectorBytes]).toEqual([0, 0]);
      }
    });
  }

  it('the installer layout in small: LUKS2 → LVM PV → ext4 LV, by UUID key; the LV free blocks and the free extents', async () => {
    const v = LUKS_LVM_VOLUME;
    const t = truth.get(v.name)!;
    const keys = openKeyStore({ selectors: [parseKeySelector(`${t.uuid}:key:${v.passphrase}`)], fromStdin: false }, noStdin());
    const inner = volumes.get(v.partition)!;
    let readBytes = 0;
    const counting: BlockReader = { sizeBytes: inner.sizeBytes, read: (o, n) => ((readBytes += n), inner.read(o, n)) };
    const opened = await openLuksVolume(counting, '/dev/sda5', keys);
    if (!opened.opened) throw new Error(opened.reason);
    const headerReadBytes = readBytes;
    const found = await readEncryptedFreeSpace(opened.view, '/dev/sda5');
    // Only metadata is decrypted: LVM label and text, the ext4 superblock, descriptors and bitmaps.
    expect(readBytes - headerReadBytes).toBeLessThan(1 << 20);
    expect(found.inner.map((i) => [i.volume.name, i.fs.type, i.fs.label, i.freeMap?.trusted])).toEqual([['/dev/vgl/root', 'ext4', 'root', true]]);
    expect(found.cipherFree.totalBytes).toBe(t.extFreeBytes + t.vgFreeBytes!);
    expect(found.notes).toEqual([]);
  });

  it('--keys-from-stdin opens a volume no --key names; no key at all is a value naming --key', async () => {
    const v = LUKS_VOLUMES[0];
    const reader = volumes.get(v.partition)!;
    const fromStdin = openKeyStore({ selectors: [], fromStdin: true }, Readable.from([`${v.passphrase}\n`]));
    expect((await openLuksVolume(reader, '/dev/sda1', fromStdin)).opened).toBe(true);
    const none = await openLuksVolume(reader, '/dev/sda1', openKeyStore({ selectors: [parseKeySelector('/dev/sda9:key:x')], fromStdin: false }, noStdin()));
    expect(none).toMatchObject({ opened: false, reason: 'encrypted (LUKS1) and no --key was given for it' });
  });

  it('all:key with the wrong passphrase is BAD_KEY naming the volume', async () => {
    const keys = openKeyStore({ selectors: [parseKeySelector('all:key:not-it')], fromStdin: false }, noStdin());
    const error = await openLuksVolume(volumes.get(2)!, '/dev/sda2', keys).catch((e: unknown) => e);
    expect(isSparsifyError(error, 'BAD_KEY')).toBe(true);
    expect((error as Error).message).toBe('no key slot of /dev/sda2 opens with the given key');
  });
  it('a dirty ext4 inside (journal needs recovery) is not read from its maps: no ciphertext dropped, the reason noted', async () => {
    const v = LUKS_VOLUMES[0];
    const name = `/dev/sda${v.partition}`;
    const keys = openKeyStore({ selectors: [parseKeySelector(`${name}:key:${v.passphrase}`)], fromStdin: false }, noStdin());
    const opened = await openLuksVolume(volumes.get(v.partition)!, name, keys);
    if (!opened.opened) throw new Error(opened.reason);
    // The plaintext superblock with EXT4_FEATURE_INCOMPAT_RECOVER (0x4 of s_feature_incompat, byte 0x60) set,
    // as a guest that crashed leaves it: a fault injected in the decrypted bytes, since the fixture is clean.
    const SB_INCOMPAT = 1024 + 0x60;
    const dirty = {
      ...opened.view,
      read: async (offset: number, length: number) => {
        const bytes = new Uint8Array(await opened.view.read(offset, length));
        if (offset <= SB_INCOMPAT && SB_INCOMPAT < offset + length) bytes[SB_INCOMPAT - offset]! |= 0x4;
        return bytes;
      },
    };
    const found = await readEncryptedFreeSpace(dirty, name);
    expect(found.inner[0]!.fs.dirty).toBe(true);
    expect(found.inner[0]!.freeMap).toMatchObject({ trusted: false });
    expect(found.cipherFree.totalBytes).toBe(0);
    expect(found.notes).toEqual([expect.stringMatching(new RegExp(`^${name}: ext4 map not trusted \\(.+\\): its blocks are copied as they are$`))]);
  });
});
