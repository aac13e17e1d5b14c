/** The btrfs driver's detector, on superblocks built here and on filesystems made by mkfs.btrfs. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { btrfsDriver } from '../../../../src/fs/btrfs/index.js';
import { parseBtrfsSuperblock } from '../../../../src/fs/btrfs/probe.js';
import { probeVolume } from '../../../../src/fs/probe.js';
import { memoryReader } from '../../../helpers/mem-reader.js';
import { openFileReader } from '../../../helpers/file-reader.js';
import { hasTool } from '../../../helpers/require.js';

const MiB = 1024 * 1024;
const UUID = '0123abcd-4567-89ef-0011-223344556677';

/** The first 1024 bytes of a btrfs superblock (fsid, bytenr, magic, sector and node size, label). */
function superblock(o: { bytenr?: bigint; sectorSize?: number; nodeSize?: number; magic?: string; devices?: bigint } = {}): Uint8Array {
  const sb = new Uint8Array(1024);
  const v = new DataView(sb.buffer);
  sb.set(UUID.replace(/-/g, '').match(/../g)!.map((h) => parseInt(h, 16)), 0x20);
  v.setBigUint64(0x30, o.bytenr ?? 65536n, true);
  sb.set([...(o.magic ?? '_BHRfS_M')].map((c) => c.charCodeAt(0)), 0x40);
  v.setBigUint64(0x88, o.devices ?? 1n, true);
  v.setUint32(0x90, o.sectorSize ?? 4096, true);
  v.setUint32(0x94, o.nodeSize ?? 16384, true);
  sb.set([...'data'].map((c) => c.charCodeAt(0)), 0x12b);
  return sb;
}

describe('parseBtrfsSuperblock', () => {
  it('decodes the fsid, label and sector size', () => {
    expect(parseBtrfsSuperblock(superblock())).toEqual({ type: 'btrfs', uuid: UUID, label: 'data', blockSizeBytes: 4096 });
  });

  it('gives the number of devices only for a filesystem over more than one', () => {
    expect(parseBtrfsSuperblock(superblock({ devices: 3n }))).toMatchObject({ devices: 3 });
  });

  it.each([
    ['another magic', { magic: '_BHRfS_X' }],
    ['a superblock that says it lies elsewhere (a backup copy)', { bytenr: 67108864n }],
    ['a sector size that is not a power of two', { sectorSize: 3000 }],
    ['a node size that is not a power of two', { nodeSize: 0 }],
  ])('refuses %s', (_name, o) => {
    expect(parseBtrfsSuperblock(superblock(o))).toBeUndefined();
  });

  it('refuses fewer than 1024 bytes', () => {
    expect(parseBtrfsSuperblock(superblock().subarray(0, 1023))).toBeUndefined();
  });
});

describe('btrfsDriver.detect', () => {
  it('finds the superblock at 64 KiB and reports its magic there', async () => {
    const vol = new Uint8Array(MiB);
    vol.set(superblock(), 65536);
    const found = await btrfsDriver.detect(memoryReader(vol), vol.subarray(0, 8192));
    expect(found).toMatchObject({ result: { type: 'btrfs', uuid: UUID }, magicOffsetBytes: 65536 + 0x40 });
  });

  it('finds nothing on a volume that ends inside the superblock', async () => {
    const vol = new Uint8Array(65536 + 1000);
    vol.set(superblock().subarray(0, 1000), 65536);
    expect(await btrfsDriver.detect(memoryReader(vol), vol.subarray(0, 8192))).toBeUndefined();
  });
});

describe.skipIf(!hasTool('mkfs.btrfs'))('btrfs made by mkfs.btrfs', () => {
  // Made in beforeAll, not while the file is collected: a filtered or skipped run never calls afterAll.
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sparsify-btrfs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is probed as btrfs with its label, UUID and sector size', async () => {
    const file = join(dir, 'btrfs.img');
    writeFileSync(file, new Uint8Array(0));
    execFileSync('truncate', ['-s', '128M', file]);
    execFileSync('mkfs.btrfs', ['-q', '-f', '-L', 'made', '-U', UUID, '-s', '4096', file], { stdio: 'ignore' });
    await using reader = await openFileReader(file);
    expect(await probeVolume(reader)).toEqual({ type: 'btrfs', uuid: UUID, label: 'made', blockSizeBytes: 4096 });
  });
});
