import { describe, expect, it } from 'vitest';
import { isSparsifyError } from '../../../src/errors.js';
import { parseGptHeader } from '../../../src/layout/gpt.js';
import { readLayout } from '../../../src/layout/read-layout.js';
import {
  ESP_GUID,
  LINUX_FS_GUID,
  MiB,
  buildGptDisk,
  flip,
  memReader,
  putMbrEntries,
  refreshGptHeaderCrc,
  view,
} from './fixtures.js';

const SIZE = 4 * MiB;
const LAST_LBA = SIZE / 512 - 1;

function threeParts(): Uint8Array {
  return buildGptDisk({
    sizeBytes: SIZE,
    parts: [
      { index: 0, firstLba: 2048, lastLba: 4095, type: ESP_GUID },
      { index: 2, firstLba: 6144, lastLba: 8000 },
      { index: 5, firstLba: 4096, lastLba: 6143 },
    ],
  });
}

async function layoutError(disk: Uint8Array): Promise<Error> {
  const err = await readLayout(memReader(disk)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSparsifyError(err, 'BAD_LAYOUT')).toBe(true);
  return err as Error;
}

describe('readLayout on GPT', () => {
  it('lists used entries in disk order, numbered by entry index + 1', async () => {
    const layout = await readLayout(memReader(threeParts()));
    expect(layout.table).toBe('gpt');
    expect(layout.sectorSizeBytes).toBe(512);
    expect(layout.notes).toEqual([]);
    expect(layout.volumes).toEqual([
      {
        name: '/dev/sda1',
        offsetBytes: 2048 * 512,
        sizeBytes: 2048 * 512,
        kind: 'partition',
        partitionNumber: 1,
        partitionType: ESP_GUID,
      },
      {
        name: '/dev/sda6',
        offsetBytes: 4096 * 512,
        sizeBytes: 2048 * 512,
        kind: 'partition',
        partitionNumber: 6,
        partitionType: LINUX_FS_GUID,
      },
      {
        name: '/dev/sda3',
        offsetBytes: 6144 * 512,
        sizeBytes: 1857 * 512,
        kind: 'partition',
        partitionNumber: 3,
        partitionType: LINUX_FS_GUID,
      },
    ]);
  });

  it('uses the disk name it is given', async () => {
    const layout = await readLayout(memReader(threeParts()), { diskName: '/dev/sdb' });
    expect(layout.volumes.map((v) => v.name)).toEqual(['/dev/sdb1', '/dev/sdb6', '/dev/sdb3']);
  });

  it('falls back to the backup when the primary header CRC is wrong', async () => {
    const disk = threeParts();
    flip(disk, 512 + 56, 0xff); // a byte of the disk GUID, covered by the header CRC
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes.map((v) => v.name)).toEqual(['/dev/sda1', '/dev/sda6', '/dev/sda3']);
    expect(layout.notes.join('\n')).toContain('primary GPT header damaged: used the backup');
    expect(layout.notes.join('\n')).toContain('CRC mismatch');
  });

  it('falls back to the backup when the primary entry array CRC is wrong', async () => {
    const disk = threeParts();
    flip(disk, 2 * 512 + 32, 0x01); // first LBA of entry 1 in the primary array
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes[0]!.offsetBytes).toBe(2048 * 512);
    expect(layout.notes.join('\n')).toMatch(/used the backup.*entry array CRC mismatch/);
  });

  it('falls back to the backup when the primary signature is gone', async () => {
    const disk = threeParts();
    disk.fill(0, 512, 1024);
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes).toHaveLength(3);
    expect(layout.notes.join('\n')).toContain('no "EFI PART" signature');
  });

  it('throws BAD_LAYOUT naming both copies when both are damaged', async () => {
    const disk = threeParts();
    flip(disk, 512 + 56, 0xff);
    flip(disk, LAST_LBA * 512 + 56, 0xff);
    const err = await layoutError(disk);
    expect(err.message).toBe(
      `GPT header at LBA 1: CRC mismatch, and the backup at LBA ${LAST_LBA} is damaged too: CRC mismatch`,
    );
    expect((err as { hint?: string }).hint).toBeTruthy();
  });

  it('notes a damaged backup when the primary is fine', async () => {
    const disk = threeParts();
    flip(disk, LAST_LBA * 512 + 56, 0xff);
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes).toHaveLength(3);
    expect(layout.notes.join('\n')).toMatch(/backup GPT header at LBA \d+ is damaged/);
  });

  it('notes a backup that is not at the end of a grown disk', async () => {
    const small = threeParts();
    const grown = new Uint8Array(SIZE * 2);
    grown.set(small);
    const layout = await readLayout(memReader(grown));
    expect(layout.volumes).toHaveLength(3);
    expect(layout.notes.join('\n')).toContain(`backup GPT header is at LBA ${LAST_LBA}`);
  });

  it('refuses a truncated image whose GPT runs past its end', async () => {
    const disk = threeParts().slice(0, 2 * MiB);
    const err = await layoutError(disk);
    expect(err.message).toMatch(/GPT header at LBA 1: last usable LBA \d+ is beyond the disk's last LBA 4095/);
    expect(err.message).toContain('the backup at LBA 4095 is damaged too');
  });

  it('rejects an entry that ends beyond the usable LBAs, with its offset', async () => {
    const disk = buildGptDisk({ sizeBytes: SIZE, parts: [{ index: 1, firstLba: 2048, lastLba: LAST_LBA }] });
    const err = await layoutError(disk);
    expect(err.message).toMatch(/^GPT entry 2 at byte 1152: LBA 2048–8191 is outside the usable LBAs 34–8158/);
  });

  it('rejects an entry whose first LBA is after its last', async () => {
    const disk = buildGptDisk({ sizeBytes: SIZE, parts: [{ index: 0, firstLba: 4000, lastLba: 3000 }] });
    expect((await layoutError(disk)).message).toContain(
      'GPT entry 1 at byte 1024: first LBA 4000 is after its last LBA 3000',
    );
  });

  it('rejects overlapping entries', async () => {
    const disk = buildGptDisk({
      sizeBytes: SIZE,
      parts: [
        { index: 0, firstLba: 2048, lastLba: 4095 },
        { index: 1, firstLba: 4000, lastLba: 5000 },
      ],
    });
    expect((await layoutError(disk)).message).toBe(
      'GPT entry 2 at byte 1152: LBA 4000–5000 overlaps GPT entry 1 (LBA 2048–4095)',
    );
  });

  it('reads a GPT with 4096-byte logical blocks', async () => {
    const disk = buildGptDisk({
      sizeBytes: 8 * MiB,
      sectorBytes: 4096,
      parts: [{ index: 0, firstLba: 256, lastLba: 511 }],
    });
    const layout = await readLayout(memReader(disk));
    expect(layout.sectorSizeBytes).toBe(4096);
    expect(layout.volumes).toEqual([
      expect.objectContaining({ name: '/dev/sda1', offsetBytes: 256 * 4096, sizeBytes: 256 * 4096 }),
    ]);
  });

  it('notes a hybrid MBR and still reads the GPT', async () => {
    const disk = threeParts();
    putMbrEntries(disk, 0, [{ slot: 1, type: 0x0c, firstLba: 2048, sectors: 2048 }]);
    const layout = await readLayout(memReader(disk));
    expect(layout.table).toBe('gpt');
    expect(layout.notes).toContain('hybrid MBR: the GPT was used, as Linux does');
  });

  it('gives an empty GPT no volumes', async () => {
    const layout = await readLayout(memReader(buildGptDisk({ sizeBytes: SIZE, parts: [] })));
    expect(layout).toMatchObject({ table: 'gpt', volumes: [] });
  });
});

describe('parseGptHeader', () => {
  function header(edit: (v: DataView) => void): Uint8Array {
    const disk = threeParts();
    edit(view(disk.subarray(512, 1024)));
    refreshGptHeaderCrc(disk, 1);
    return disk.slice(512, 1024);
  }

  it.each([
    ['a MyLBA that is not the LBA read', (v: DataView) => v.setBigUint64(24, 5n, true), /MyLBA is 5, expected 1/],
    ['an entry size below 128', (v: DataView) => v.setUint32(84, 120, true), /partition entry size 120 is invalid/],
    [
      'an entry size not a multiple of 8',
      (v: DataView) => v.setUint32(84, 132, true),
      /partition entry size 132 is invalid/,
    ],
    ['too many entries', (v: DataView) => v.setUint32(80, 1 << 20, true), /too many/],
    ['a header size above the sector', (v: DataView) => v.setUint32(12, 600, true), /header size 600 out of bounds/],
    ['a header size below 92', (v: DataView) => v.setUint32(12, 91, true), /header size 91 out of bounds/],
    ['revision 2.0', (v: DataView) => v.setUint32(8, 0x00020000, true), /unsupported revision/],
    [
      'first usable after last usable',
      (v: DataView) => v.setBigUint64(40, 9000n, true),
      /first usable LBA 9000 is after/,
    ],
    ['an entry array over its own header', (v: DataView) => v.setBigUint64(72, 1n, true), /overlaps the header/],
    [
      'a 64-bit LBA beyond 2^53',
      (v: DataView) => v.setBigUint64(48, 1n << 60n, true),
      /last usable LBA Infinity is beyond/,
    ],
  ])('rejects %s', (_what, edit, reason) => {
    const checked = parseGptHeader(header(edit), 1, LAST_LBA + 1);
    expect(checked.ok).toBe(false);
    if (!checked.ok) expect(checked.reason).toMatch(reason);
  });

  it('rejects a sector too short to hold a header', () => {
    expect(parseGptHeader(new Uint8Array(50), 1, 100)).toEqual({ ok: false, reason: 'sector too short' });
  });
});
