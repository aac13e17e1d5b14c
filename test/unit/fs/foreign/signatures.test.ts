/** The filesystems known by signature only: each found by its own superblock, nothing by a near miss. */
import { describe, expect, it } from 'vitest';
import { probeVolume } from '../../../../src/fs/probe.js';
import { memoryReader } from '../../../helpers/mem-reader.js';

const KiB = 1024;
const VOLUME_BYTES = 128 * KiB;

/** A volume of zeros with `fill` applied. */
function volume(fill: (bytes: Uint8Array, view: DataView) => void): Uint8Array {
  const bytes = new Uint8Array(VOLUME_BYTES);
  fill(bytes, new DataView(bytes.buffer));
  return bytes;
}

function ascii(bytes: Uint8Array, offset: number, text: string): void {
  bytes.set(new TextEncoder().encode(text), offset);
}

/** As mkfs.f2fs writes it (checked against blkid): magic, 4 KiB blocks, UUID at 108, a UTF-16 label at 124. */
const f2fs = volume((b, v) => {
  v.setUint32(KiB, 0xf2f52010, true);
  v.setUint32(KiB + 16, 12, true);
  b.set([0x76, 0xb9, 0xc3, 0x18, 0x1b, 0x1c, 0x4c, 0xf3, 0xaa, 0x7d, 0x32, 0x11, 0xfe, 0xe8, 0x74, 0xf7], KiB + 108);
  b.set([0x4c, 0, 0x42, 0, 0x4c, 0], KiB + 124);
});
/** As mkfs.exfat writes it: the name at 3, serial EF93ACD8, 512-byte sectors, 8 per cluster, the boot signature. */
const exfat = volume((b, v) => {
  ascii(b, 3, 'EXFAT   ');
  v.setUint32(100, 0xef93acd8, true);
  b[108] = 9;
  b[109] = 3;
  v.setUint16(510, 0xaa55, true);
});
const jfs = volume((b, v) => {
  ascii(b, 32 * KiB, 'JFS1');
  v.setUint32(32 * KiB + 16, 4096, true);
});
const hfsx = volume((_b, v) => {
  v.setUint16(KiB, 0x4858, false);
  v.setUint16(KiB + 2, 5, false);
  v.setUint32(KiB + 40, 4096, false);
});
const reiserfs = volume((b, v) => {
  v.setUint16(64 * KiB + 44, 4096, true);
  ascii(b, 64 * KiB + 52, 'ReIsEr2Fs');
});
const nilfs2 = volume((_b, v) => {
  v.setUint16(KiB + 6, 0x3434, true);
  v.setUint32(KiB + 24, 2, true);
});

describe('foreign signatures', () => {
  it.each([
    ['f2fs', f2fs, { type: 'f2fs', uuid: '76b9c318-1b1c-4cf3-aa7d-3211fee874f7', blockSizeBytes: 4096, label: 'LBL' }],
    ['exfat', exfat, { type: 'exfat', uuid: 'EF93-ACD8', blockSizeBytes: 4096 }],
    ['jfs', jfs, { type: 'jfs', blockSizeBytes: 4096 }],
    ['hfsx', hfsx, { type: 'hfsplus', blockSizeBytes: 4096, detail: 'HFSX' }],
    ['reiserfs', reiserfs, { type: 'reiserfs', blockSizeBytes: 4096 }],
    ['nilfs2', nilfs2, { type: 'nilfs2', blockSizeBytes: 4096 }],
  ])('names %s', async (_name, bytes, expected) => {
    expect(await probeVolume(memoryReader(bytes))).toEqual(expected);
  });

  it('leave a near miss unknown: an f2fs with an absurd block size, an exFAT without its boot signature, an HFS+ of the wrong version', async () => {
    const badF2fs = f2fs.slice();
    new DataView(badF2fs.buffer).setUint32(KiB + 16, 40, true);
    const badExfat = exfat.slice();
    badExfat[510] = 0;
    const badHfs = hfsx.slice();
    new DataView(badHfs.buffer).setUint16(KiB + 2, 4, false);
    for (const bytes of [badF2fs, badExfat, badHfs, new Uint8Array(VOLUME_BYTES)]) {
      expect(await probeVolume(memoryReader(bytes))).toEqual({ type: 'unknown' });
    }
  });

  it('never read past a small volume', async () => {
    expect(await probeVolume(memoryReader(jfs.subarray(0, 16 * KiB)))).toEqual({ type: 'unknown' });
  });
});
