/**
 * The partition-table rewriter on synthetic disks: every partition lands at its new place, the
 * table reads back through the run's own readers, and what must stay (GUIDs, names, attributes,
 * the disk GUID, the boot code, the EBR chain's shape) stays. Real-tool checks: test/integration/table-rewrite.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { chsBytes } from '../../../src/layout/rewrite/chs.js';
import { checkRewrite, readTableBytes, rewriteTable, writesReader } from '../../../src/layout/rewrite/table.js';
import type { NewPlaces, SectorWrite } from '../../../src/layout/rewrite/types.js';
import { readLayout } from '../../../src/layout/read-layout.js';
import { MiB, buildGptDisk, memReader, putMbrEntries } from './fixtures.js';

async function rewritten(disk: Uint8Array, places: NewPlaces, newDiskBytes: number): Promise<{ writes: SectorWrite[]; disk: Uint8Array }> {
  const reader = memReader(disk);
  const layout = await readLayout(reader);
  if (layout.table === 'none') throw new Error('no table');
  const writes = rewriteTable(await readTableBytes(reader, layout), places, newDiskBytes);
  const out = new Uint8Array(newDiskBytes);
  out.set(disk.subarray(0, Math.min(disk.length, newDiskBytes)));
  for (const w of writes) out.set(w.bytes, w.offsetBytes);
  return { writes, disk: out };
}

/** How a rewrite failed ({code, message}), or 'resolved': a resolved disk is never handed to vitest's diff (it is megabytes). */
async function failure(promise: Promise<unknown>): Promise<{ code?: string; message: string } | 'resolved'> {
  try {
    await promise;
    return 'resolved';
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { ...(e.code ? { code: e.code } : {}), message: e.message };
  }
}

describe('GPT rewrite', () => {
  for (const sectorBytes of [512, 4096]) {
    it(`${sectorBytes}-byte blocks: partition 2 moves down, the disk ends after it, entries keep every other byte`, async () => {
      const s = sectorBytes;
      const first = (2048 * 512) / s;
      const old = buildGptDisk({
        sizeBytes: 16 * MiB,
        sectorBytes: s,
        parts: [
          { index: 0, firstLba: first, lastLba: first + MiB / s - 1, name: 'root' },
          { index: 1, firstLba: (8 * MiB) / s, lastLba: (10 * MiB) / s - 1, name: 'swap' },
        ],
      });
      const newStart = first + MiB / s;
      // The backup: the 16 KiB entry array and the header's block.
      const newDiskBytes = (newStart + (2 * MiB) / s + 16384 / s + 1) * s;
      const { disk } = await rewritten(old, new Map([[2, { firstLba: newStart, sectors: (2 * MiB) / s }]]), newDiskBytes);
      const layout = await readLayout(memReader(disk));
      expect(layout.notes).toEqual([]);
      expect(layout.volumes.map((v) => [v.partitionNumber, v.offsetBytes, v.sizeBytes])).toEqual([
        [1, first * s, MiB],
        [2, newStart * s, 2 * MiB],
      ]);
      // Entry array: only the LBA fields of entry 2 differ (bytes 32..47 of entry index 1).
      const oldArray = old.subarray(2 * s, 2 * s + 128 * 128);
      const newArray = disk.subarray(2 * s, 2 * s + 128 * 128);
      const differing = [...newArray.keys()].filter((i) => newArray[i] !== oldArray[i]);
      expect(differing.every((i) => i >= 128 + 32 && i < 128 + 48)).toBe(true);
      expect(differing.length).toBeGreaterThan(0);
      // Disk GUID and boot code kept.
      expect(disk.subarray(s + 56, s + 72)).toEqual(old.subarray(s + 56, s + 72));
    });
  }

  it('a partition past the new usable end, or onto another, is refused as BAD_LAYOUT', async () => {
    const old = buildGptDisk({ sizeBytes: 16 * MiB, parts: [{ index: 0, firstLba: 2048, lastLba: 4095 }, { index: 1, firstLba: 8192, lastLba: 10239 }] });
    expect(await failure(rewritten(old, new Map(), 4 * MiB))).toMatchObject({ code: 'BAD_LAYOUT', message: expect.stringMatching(/GPT entry 2 .*outside the usable LBAs/) });
    expect(await failure(rewritten(old, new Map([[2, { firstLba: 4000, sectors: 2048 }]]), 16 * MiB))).toMatchObject({ code: 'BAD_LAYOUT', message: expect.stringMatching(/overlaps GPT entry 1/) });
    expect(await failure(rewritten(old, new Map([[3, { firstLba: 20000, sectors: 10 }]]), 16 * MiB))).toMatchObject({ message: expect.stringMatching(/partition 3 is not in the table/) });
  });

  it('a hybrid MBR is refused as UNSUPPORTED', async () => {
    const old = buildGptDisk({ sizeBytes: 16 * MiB, parts: [{ index: 0, firstLba: 2048, lastLba: 4095 }] });
    putMbrEntries(old, 0, [{ slot: 1, type: 0x83, firstLba: 2048, sectors: 2048 }]);
    expect(await failure(rewritten(old, new Map(), 8 * MiB))).toMatchObject({ code: 'UNSUPPORTED' });
  });

  it('checkRewrite refuses writes that do not put a partition where it was asked', async () => {
    const old = buildGptDisk({ sizeBytes: 16 * MiB, parts: [{ index: 0, firstLba: 2048, lastLba: 4095 }] });
    const { writes } = await rewritten(old, new Map(), 8 * MiB);
    await expect(checkRewrite(writes, 8 * MiB, 'gpt', new Map(), 1)).resolves.toMatchObject({ table: 'gpt' });
    await expect(checkRewrite(writes, 8 * MiB, 'gpt', new Map([[1, { firstLba: 2049, sectors: 2048 }]]), 1)).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(checkRewrite(writes, 8 * MiB, 'mbr', new Map(), 1)).rejects.toThrow(/reads as gpt/);
    // A disk whose end is not where the writes put the backup: the reader notes a misplaced backup.
    await expect(checkRewrite(writes, 9 * MiB, 'gpt', new Map(), 1)).rejects.toThrow(/backup GPT header/);
  });

  it('writesReader reads writes over zeros and refuses reads past its end', async () => {
    const r = writesReader([{ offsetBytes: 4, bytes: new Uint8Array([1, 2, 3]) }], 8);
    expect([...(await r.read(2, 6))]).toEqual([0, 0, 1, 2, 3, 0]);
    await expect(r.read(6, 4)).rejects.toThrow(RangeError);
  });
});

describe('MBR rewrite', () => {
  /** A primary, an extended container at 10 MiB, logical partitions 5 and 6 each 1 MiB after its EBR. */
  function mbrDisk(): Uint8Array {
    const disk = new Uint8Array(32 * MiB);
    for (let i = 0; i < 440; i++) disk[i] = i & 0xff; // boot code
    putMbrEntries(disk, 0, [
      { slot: 0, type: 0x83, firstLba: 2048, sectors: 4096, status: 0x80 },
      { slot: 1, type: 0x05, firstLba: 20480, sectors: 40960 },
    ]);
    putMbrEntries(disk, 20480, [
      { slot: 0, type: 0x83, firstLba: 2048, sectors: 4096 },
      { slot: 1, type: 0x05, firstLba: 20480, sectors: 2048 + 4096 },
    ]);
    putMbrEntries(disk, 40960, [{ slot: 0, type: 0x82, firstLba: 2048, sectors: 8192 }]);
    return disk;
  }

  it('logical partitions moved down take their EBRs along; the container shrinks to them; boot code and flags stay', async () => {
    const old = mbrDisk();
    const places = new Map([
      [5, { firstLba: 8192, sectors: 4096 }],
      [6, { firstLba: 8192 + 4096 + 2048, sectors: 8192 }],
    ]);
    const newDiskBytes = (8192 + 4096 + 2048 + 8192) * 512;
    const { writes, disk } = await rewritten(old, places, newDiskBytes);
    expect(writes.map((w) => w.offsetBytes / 512)).toEqual([0, 6144, 6144 + 4096 + 2048]);
    await checkRewrite(writes, newDiskBytes, 'mbr', places, 3);
    const layout = await readLayout(memReader(disk));
    expect(layout.volumes.map((v) => [v.partitionNumber, v.offsetBytes / 512, v.sizeBytes / 512, v.partitionType])).toEqual([
      [1, 2048, 4096, '83'],
      [5, 8192, 4096, '83'],
      [6, 14336, 8192, '82'],
    ]);
    expect(disk.subarray(0, 440)).toEqual(old.subarray(0, 440));
    expect(disk[446]).toBe(0x80);
    // Extended container: from the first EBR (LBA 6144) to the end of partition 6.
    const v = new DataView(disk.buffer);
    expect([v.getUint32(446 + 16 + 8, true), v.getUint32(446 + 16 + 12, true)]).toEqual([6144, 14336 + 8192 - 6144]);
  });

  it('a logical partition moved so low that its EBR would land on LBA 0 is refused', async () => {
    expect(await failure(rewritten(mbrDisk(), new Map([[5, { firstLba: 1024, sectors: 4096 }]]), 32 * MiB))).toMatchObject({ message: expect.stringMatching(/leaves no room for its EBR/) });
  });

  it('CHS: 255 heads × 63 sectors, past cylinder 1023 the maximum or all ones', () => {
    expect(chsBytes(2048)).toEqual([32, 33, 0]);
    expect(chsBytes(131071)).toEqual([40, 32, 8]);
    expect(chsBytes(20 * 1024 * 2048)).toEqual([0xfe, 0xff, 0xff]);
    expect(chsBytes(20 * 1024 * 2048, 'all-ones')).toEqual([0xff, 0xff, 0xff]);
  });
});
