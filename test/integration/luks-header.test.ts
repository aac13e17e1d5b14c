/**
 * LUKS1 and LUKS2 volumes made by cryptsetup in the libguestfs appliance: the headers decode,
 * the passphrase recovers the very volume key cryptsetup dumps, and the decrypted view reads
 * the plaintext the opened dm-crypt mapping read in the appliance.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { beforeAll, expect, it } from 'vitest';
import { sliceReader, type BlockReader } from '../../src/disk/types.js';
import { isSparsifyError } from '../../src/errors.js';
import { openDecryptedView } from '../../src/fs/luks/decrypted-view.js';
import { readLuksHeader } from '../../src/fs/luks/read-header.js';
import { unlockLuks } from '../../src/fs/luks/unlock.js';
import { probeVolume } from '../../src/fs/probe.js';
import { readLayout } from '../../src/layout/read-layout.js';
import { openFileReader } from '../helpers/file-reader.js';
import { buildLuksFixture, forgePrimary, LUKS_VOLUMES, type LuksTruth } from '../helpers/luks-fixture.js';
import { memoryReader } from '../helpers/mem-reader.js';
import { describeIntegration } from '../helpers/require.js';

const text = (s: string) => new TextEncoder().encode(s);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describeIntegration('LUKS volumes made by cryptsetup in the appliance', { tools: ['guestfish'] }, () => {
  let truth: Map<string, LuksTruth>;
  const volumes = new Map<string, { reader: BlockReader; bytes: Uint8Array }>();

  beforeAll(async () => {
    const built = await buildLuksFixture();
    truth = built.truth;
    const image = await readFile(built.imagePath);
    await using disk = await openFileReader(built.imagePath);
    const layout = await readLayout(disk);
    for (const v of LUKS_VOLUMES) {
      const part = layout.volumes.find((p) => p.partitionNumber === v.partition)!;
      const bytes = new Uint8Array(image.subarray(part.offsetBytes, part.offsetBytes + part.sizeBytes));
      volumes.set(v.name, { reader: memoryReader(bytes), bytes });
    }
  }, 600_000);

  for (const v of LUKS_VOLUMES) {
    it(`${v.name}: LUKS${v.version} ${v.cipher} header decodes as cryptsetup made it`, async () => {
      const header = await readLuksHeader(volumes.get(v.name)!.reader);
      expect(header.version).toBe(v.version);
      expect(header.uuid).toBe(truth.get(v.name)!.uuid);
      expect(header.segment.encryption).toBe(v.cipher);
      expect(header.segment.sectorBytes).toBe(v.sectorBytes);
      expect(header.keyslots.length).toBeGreaterThan(0);
      const kdfs = header.keyslots.map((s) => s.kdf.type);
      expect(kdfs).toContain(v.name === 'l2id' ? 'argon2id' : v.name === 'l2i' ? 'argon2i' : 'pbkdf2');
    });

    it(`${v.name}: the passphrase recovers the volume key luksDump shows, and the view reads the plaintext`, async () => {
      const { reader } = volumes.get(v.name)!;
      const header = await readLuksHeader(reader);
      const unlocked = await unlockLuks(reader, header, [text(v.passphrase)], `/dev/sda${v.partition}`);
      const want = truth.get(v.name)!;
      expect(hex(unlocked.volumeKey)).toBe(want.volumeKeyHex);
      const view = openDecryptedView(reader, header, unlocked.volumeKey, `/dev/sda${v.partition}`);
      expect(view.sizeBytes).toBe(want.plainBytes);
      expect(createHash('sha256').update(await view.read(0, 4 << 20)).digest('hex')).toBe(want.plainSha256);
      expect(await view.read(1024, 1024)).toEqual(want.superblock);
      // An unaligned read inside one sector decrypts the same bytes.
      expect(await view.read(1024 + 56, 2)).toEqual(want.superblock.subarray(56, 58));
      const probed = await probeVolume(view);
      expect([probed.type, probed.label]).toEqual(['ext4', v.name]);
    });
  }

  it('decodes through a reader that hands out Buffers (whose slice() is a view, not a copy)', async () => {
    const { reader } = volumes.get('l2id')!;
    const buffers: BlockReader = { sizeBytes: reader.sizeBytes, read: async (o, n) => Buffer.from(await reader.read(o, n)) };
    const header = await readLuksHeader(buffers);
    expect(header.uuid).toBe(truth.get('l2id')!.uuid);
  });

  it('opens the LUKS2 slot the key belongs to when another slot comes first', async () => {
    const { reader } = volumes.get('l2i')!;
    const header = await readLuksHeader(reader);
    expect(header.keyslots.map((s) => s.id)).toEqual(['0', '1']);
    const unlocked = await unlockLuks(reader, header, [text('wrong one'), text('second.slot.key')], '/dev/sda4');
    expect(unlocked.keyslot).toBe('1');
    const other = await unlockLuks(reader, header, [text('other-slot-zero')], '/dev/sda4');
    expect([other.keyslot, hex(other.volumeKey)]).toEqual(['0', hex(unlocked.volumeKey)]);
  });

  it('a wrong key is one line naming the volume', async () => {
    const { reader } = volumes.get('l1xts')!;
    const header = await readLuksHeader(reader);
    const error = await unlockLuks(reader, header, [text('luks1-pass-phrasE')], '/dev/sda2').catch((e: unknown) => e);
    expect(isSparsifyError(error, 'BAD_KEY')).toBe(true);
    expect((error as Error).message).toBe('no key slot of /dev/sda2 opens with the given key');
  });

  it('maps plaintext ranges back to whole ciphertext sectors after the header', async () => {
    const { reader } = volumes.get('l2id')!;
    const header = await readLuksHeader(reader);
    const view = openDecryptedView(reader, header, new Uint8Array(32), '/dev/sda2');
    expect(view.cipherRangeOf(100, 4096)).toBeUndefined();
    expect(view.cipherRangeOf(100, 3 * 4096)).toEqual({ offsetBytes: header.segment.offsetBytes + 4096, lengthBytes: 2 * 4096 });
    expect(header.headerBytes).toBeLessThanOrEqual(header.segment.offsetBytes);
  });

  describeHostile(() => volumes);
});

function describeHostile(volumes: () => Map<string, { reader: BlockReader; bytes: Uint8Array }>): void {
  it('refuses an Argon2 header asking for 100 GiB of memory before deriving anything', async () => {
    const { bytes } = volumes().get('l2id')!;
    const forged = memoryReader(forgePrimary(bytes, (j) => j.replace(/"memory":\d+/, `"memory":${100 * 1024 * 1024}`)));
    const header = await readLuksHeader(forged);
    expect(header.keyslots[0]!.kdf).toMatchObject({ type: 'argon2id', memoryKib: 100 * 1024 * 1024 });
    const error = await unlockLuks(forged, header, [text('luks2-argon2id')], '/dev/sda2').catch((e: unknown) => e);
    expect(isSparsifyError(error, 'BAD_IMAGE')).toBe(true);
    expect((error as Error).message).toMatch(/argon2id asks for 102400 MiB of memory .*refused as absurd/);
  });

  it('refuses PBKDF2 iteration counts no cryptsetup writes', async () => {
    const { bytes } = volumes().get('l1xts')!;
    const forged = bytes.slice();
    new DataView(forged.buffer).setUint32(208 + 4, 0xfffffff0, false); // key slot 0 iterations
    const error = await unlockLuks(memoryReader(forged), await readLuksHeader(memoryReader(forged)), [text('luks1-pass-phrase')], '/dev/sda1').catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/PBKDF2 asks for 4294967280 iterations .*refused as absurd/);
  });

  it('a damaged primary LUKS2 header falls back to the secondary; both damaged is BAD_IMAGE', async () => {
    const { bytes } = volumes().get('l2id')!;
    const primaryBroken = bytes.slice();
    primaryBroken[4096 + 10]! ^= 1;
    const header = await readLuksHeader(memoryReader(primaryBroken));
    expect(header.keyslots.map((s) => s.kdf.type)).toEqual(['argon2id']);
    const bothBroken = primaryBroken.slice();
    const hdrSize = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(8, false));
    bothBroken[hdrSize + 4096 + 10]! ^= 1;
    const error = await readLuksHeader(memoryReader(bothBroken)).catch((e: unknown) => e);
    expect(isSparsifyError(error, 'BAD_IMAGE')).toBe(true);
    expect((error as Error).message).toBe(
      'LUKS2 header at byte 0: neither header copy is valid (primary: checksum mismatch; secondary: checksum mismatch)',
    );
  });

  it('a truncated volume is BAD_IMAGE, not a crash', async () => {
    const { reader } = volumes().get('l2id')!;
    const error = await readLuksHeader(sliceReader(reader, 0, 8192)).catch((e: unknown) => e);
    expect(isSparsifyError(error, 'BAD_IMAGE')).toBe(true);
    const v1 = await readLuksHeader(sliceReader(volumes().get('l1xts')!.reader, 0, 100_000)).catch((e: unknown) => e);
    expect((v1 as Error).message).toMatch(/^LUKS1 header at byte 0: payload offset 2097152 is beyond the 100000-byte volume$/);
  });
}
