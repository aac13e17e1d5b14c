/**
 * The shrink's partition-table rewriter against the real tools: tables made by sgdisk and
 * sfdisk, rewritten for moved partitions and a smaller disk, then judged by `sgdisk -v` and
 * `sfdisk --verify`, and read back with `sfdisk --dump` (identifiers, names, attributes kept).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readLayout } from '../../src/layout/read-layout.js';
import { checkRewrite, readTableBytes, rewriteTable } from '../../src/layout/rewrite/table.js';
import type { NewPlaces, SectorWrite } from '../../src/layout/rewrite/types.js';
import { openFileReader } from '../helpers/file-reader.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;

function run(file: string, args: readonly string[], input?: string): string {
  return execFileSync(file, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

let dir: string;

async function sparseFile(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, 'w');
  await handle.truncate(sizeBytes);
  await handle.close();
}

/** Reads the table of `path`, rewrites it for `places` and `newDiskBytes`, and checks the result reads back. */
async function rewrite(path: string, places: NewPlaces, newDiskBytes: number): Promise<SectorWrite[]> {
  await using reader = await openFileReader(path);
  const layout = await readLayout(reader);
  if (layout.table === 'none') throw new Error('no table');
  const writes = rewriteTable(await readTableBytes(reader, layout), places, newDiskBytes);
  await checkRewrite(writes, newDiskBytes, layout.table, places, layout.volumes.length);
  return writes;
}

/** Makes `path` a disk of `newDiskBytes` holding `writes` (the rest as it was). */
async function apply(path: string, writes: readonly SectorWrite[], newDiskBytes: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.truncate(newDiskBytes);
    for (const w of writes) await handle.write(w.bytes, 0, w.bytes.length, w.offsetBytes);
  } finally {
    await handle.close();
  }
}

/** Whether every write holds exactly the bytes already at its place in `path`. */
async function writesMatchFile(path: string, writes: readonly SectorWrite[]): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    for (const w of writes) {
      const { buffer } = await handle.read(Buffer.alloc(w.bytes.length), 0, w.bytes.length, w.offsetBytes);
      if (Buffer.compare(buffer, Buffer.from(w.bytes)) !== 0) return false;
    }
    return true;
  } finally {
    await handle.close();
  }
}

interface DumpPart {
  node: string;
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
  attrs?: string;
}

function dump(path: string): { label: string; id: string; partitions: DumpPart[]; lastlba?: number } {
  return (JSON.parse(run('sfdisk', ['--json', path])) as { partitiontable: { label: string; id: string; partitions: DumpPart[]; lastlba?: number } }).partitiontable;
}

describeIntegration('partition table rewrite against sgdisk and sfdisk', { tools: ['sgdisk', 'sfdisk'] }, () => {
  beforeAll(async () => {
    dir = await mkdtemp('/var/tmp/sp-rewrite-');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function gptDisk(name: string, sizeBytes: number): Promise<string> {
    const path = join(dir, name);
    await sparseFile(path, sizeBytes);
    run('sgdisk', ['-o', '-n', '1:2048:+20M', '-t', '1:8300', '-c', '1:root fs', '-A', '1:set:2', '-n', '2:40M:+8M', '-t', '2:8200', '-c', '2:swap', '-A', '2:set:60', path]);
    return path;
  }

  it('GPT: a rewrite with nothing moved on the same disk gives back sgdisk\'s own bytes', async () => {
    for (const size of [64 * MiB, 9 * 1024 * MiB]) {
      const path = await gptDisk(`same-${size}.img`, size);
      const writes = await rewrite(path, new Map(), size);
      expect(writes).toHaveLength(5);
      expect(await writesMatchFile(path, writes)).toBe(true);
    }
  });

  it('GPT: partition 2 moved down onto a smaller disk: sgdisk -v is clean, identifiers, names and attributes kept', async () => {
    const path = await gptDisk('shrink.img', 64 * MiB);
    const before = dump(path);
    const p2 = before.partitions[1]!;
    const newStart = 2048 + 20 * 2048;
    const newDiskBytes = (newStart + p2.size + 33) * 512;
    const writes = await rewrite(path, new Map([[2, { firstLba: newStart, sectors: p2.size }]]), newDiskBytes);
    await apply(path, writes, newDiskBytes);
    expect(run('sgdisk', ['-v', path])).toMatch(/No problems found/);
    const after = dump(path);
    expect(after.id).toBe(before.id);
    expect(after.lastlba).toBe(newStart + p2.size - 1);
    expect(after.partitions.map((p) => ({ ...p, node: '' }))).toEqual([
      { ...before.partitions[0]!, node: '' },
      { ...p2, start: newStart, node: '' },
    ]);
    expect(after.partitions[0]!.attrs).toBe('LegacyBIOSBootable');
    expect(after.partitions[1]!.name).toBe('swap');
    // The backup at the new end is what sgdisk reads when the primary is gone.
    const handle = await open(path, 'r+');
    await handle.write(Buffer.alloc(512), 0, 512, 512);
    await handle.close();
    // sgdisk falls back to the backup copy and finds it whole.
    const fromBackupVerdict = run('sgdisk', ['-v', path]);
    expect(fromBackupVerdict).toMatch(/corrupt GPT/);
    expect(fromBackupVerdict).toMatch(/No problems found/);
    const fromBackup = await rewrite(path, new Map(), newDiskBytes).catch((e: Error) => e.message);
    expect(fromBackup).toMatch(/primary GPT header is damaged/);
  });

  it('GPT: a partition past the new end is refused with the entry named', async () => {
    const path = await gptDisk('refuse.img', 64 * MiB);
    await expect(rewrite(path, new Map(), 40 * MiB)).rejects.toThrow(/GPT entry 2 .*outside the usable LBAs/);
  });

  async function mbrDisk(name: string): Promise<string> {
    const path = join(dir, name);
    await sparseFile(path, 128 * MiB);
    // A primary, the extended container, three logical partitions with gaps between them.
    const script = [
      'label: dos',
      'label-id: 0x1234abcd',
      'start=2048, size=16MiB, type=83, bootable',
      'start=40MiB, size=80MiB, type=5',
      'start=42MiB, size=8MiB, type=83',
      'start=60MiB, size=10MiB, type=82',
      'start=90MiB, size=6MiB, type=83',
      '',
    ].join('\n');
    run('sfdisk', ['--no-reread', '--no-tell-kernel', path], script);
    return path;
  }

  it('MBR: a rewrite with nothing moved gives back sfdisk\'s own bytes, EBRs included', async () => {
    const path = await mbrDisk('mbr-same.img');
    const writes = await rewrite(path, new Map(), 128 * MiB);
    expect(writes).toHaveLength(4);
    expect(await writesMatchFile(path, writes)).toBe(true);
  });

  it('MBR: past cylinder 1023 the CHS fields are written as sfdisk writes them (FE FF FF)', async () => {
    const path = join(dir, 'mbr-big.img');
    await sparseFile(path, 20 * 1024 * MiB);
    run('sfdisk', ['--no-reread', '--no-tell-kernel', path], 'label: dos\nstart=2048, size=12GiB, type=83\nstart=13GiB, size=4GiB, type=5\nstart=14GiB, size=1GiB, type=83\n');
    const writes = await rewrite(path, new Map(), 20 * 1024 * MiB);
    expect(writes).toHaveLength(2);
    expect(await writesMatchFile(path, writes)).toBe(true);
  });

  it('MBR: logical partitions moved down: the EBR chain and the extended container follow, sfdisk --verify is clean', async () => {
    const path = await mbrDisk('mbr-shrink.img');
    const before = dump(path);
    const [p1, ext, p5, p6, p7] = before.partitions as [DumpPart, DumpPart, DumpPart, DumpPart, DumpPart];
    // p5 moves so that its EBR (as far before it as sfdisk put it) comes right after p1; p6 and p7 follow with a one-MiB gap each.
    const ebrGap = p5.start - ext.start;
    const p5Start = p1.start + p1.size + ebrGap;
    const p6Start = p5Start + p5.size + 2048;
    const p7Start = p6Start + p6.size + 2048;
    const places = new Map([
      [5, { firstLba: p5Start, sectors: p5.size }],
      [6, { firstLba: p6Start, sectors: p6.size }],
      [7, { firstLba: p7Start, sectors: p7.size }],
    ]);
    const newDiskBytes = (p7Start + p7.size) * 512;
    await apply(path, await rewrite(path, places, newDiskBytes), newDiskBytes);
    expect(run('sfdisk', ['--verify', path])).toMatch(/No errors detected/);
    const after = dump(path);
    expect(after.id).toBe(before.id);
    expect(after.partitions.map(({ start, size, type }) => ({ start, size, type }))).toEqual([
      { start: p1.start, size: p1.size, type: '83' },
      { start: p5Start - ebrGap, size: p7Start + p7.size - (p5Start - ebrGap), type: '5' },
      { start: p5Start, size: p5.size, type: '83' },
      { start: p6Start, size: p6.size, type: '82' },
      { start: p7Start, size: p7.size, type: '83' },
    ]);
  });
});
