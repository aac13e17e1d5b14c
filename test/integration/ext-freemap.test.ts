/**
 * readExtFreeMap against filesystems made by mke2fs and changed by debugfs and the kernel; the
 * truth is dumpe2fs: its per-group "Free blocks:" lists and its header's "Free blocks:" count.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ExtentSet, type Range } from '../../src/disk/extent-set.js';
import { openFileReader } from '../helpers/file-reader.js';
import type { BlockReader } from '../../src/disk/types.js';
import { isSparsifyError } from '../../src/errors.js';
import { readExtFreeMap } from '../../src/fs/ext/free-map.js';
import type { FreeMap } from '../../src/fs/types.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
let dir = '';

function run(file: string, args: readonly string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A sparse file of `sizeBytes` formatted by mke2fs with `args`. */
async function mkfs(name: string, sizeBytes: number, args: readonly string[]): Promise<string> {
  const path = join(dir, `${name}.img`);
  const handle = await open(path, 'w');
  await handle.truncate(sizeBytes);
  await handle.close();
  run('mke2fs', ['-q', '-F', ...args, path]);
  return path;
}

async function freeMapOf(path: string): Promise<FreeMap> {
  const reader = await openFileReader(path);
  try {
    return await readExtFreeMap(reader);
  } finally {
    await reader[Symbol.asyncDispose]();
  }
}

/** What dumpe2fs says: the header's counts and the union of every group's free list, in bytes. */
interface Dump {
  readonly freeBlocks: number;
  readonly blockBytes: number;
  readonly clusterBlocks: number;
  readonly free: ExtentSet;
  readonly uninitGroups: number;
  readonly text: string;
}

function dumpe2fs(path: string): Dump {
  const text = run('dumpe2fs', [path]);
  const header = (field: string): number | undefined => {
    const m = new RegExp(`^${field}:\\s+(\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const blockBytes = header('Block size')!;
  const clusterBlocks = (header('Cluster size') ?? blockBytes) / blockBytes;
  const ranges: Range[] = [];
  // A group's list names blocks; with bigalloc "a-b" runs from cluster a to the cluster starting at b.
  for (const m of text.matchAll(/^\s+Free blocks: (.*)$/gm)) {
    for (const item of m[1]!.split(',').map((t) => t.trim()).filter(Boolean)) {
      const [a, b = a] = item.split('-').map(Number) as [number, number?];
      ranges.push({ start: a * blockBytes, end: (b! + clusterBlocks) * blockBytes });
    }
  }
  const blocksCount = header('Block count')!;
  return {
    freeBlocks: header('Free blocks')!,
    blockBytes,
    clusterBlocks,
    free: ExtentSet.from(ranges).clip(blocksCount * blockBytes),
    uninitGroups: (text.match(/BLOCK_UNINIT/g) ?? []).length,
    text,
  };
}

/** The map must equal dumpe2fs exactly, and the superblock counter its header. */
async function expectMatchesDumpe2fs(path: string): Promise<{ map: FreeMap & { trusted: true }; dump: Dump }> {
  const dump = dumpe2fs(path);
  const map = await freeMapOf(path);
  if (!map.trusted) throw new Error(`untrusted: ${map.reason}`);
  expect(map.free.ranges).toEqual(dump.free.ranges);
  expect(map.counterFreeBytes).toBe(dump.freeBlocks * dump.blockBytes);
  expect(map.unitBytes).toBe(dump.blockBytes * dump.clusterBlocks);
  expect(map.free.totalBytes).toBeGreaterThan(0);
  return { map, dump };
}

function fsck(path: string): void {
  run('e2fsck', ['-fn', path]);
}

/** Writes `files` (name → MiB of random data) with debugfs, then removes `remove`. */
async function fillWithDebugfs(path: string, files: Record<string, number>, remove: string[]): Promise<void> {
  const commands: string[] = [];
  for (const [name, mib] of Object.entries(files)) {
    const src = join(dir, `src-${name}`);
    await writeFile(src, randomBytes(mib * MiB));
    commands.push(`write ${src} ${name}`);
  }
  commands.push(...remove.map((name) => `rm ${name}`));
  const script = join(dir, 'debugfs.cmd');
  await writeFile(script, commands.join('\n') + '\n');
  run('debugfs', ['-w', '-f', script, path]);
}

function setSuper(path: string, request: string): void {
  run('debugfs', ['-w', '-R', request, path]);
}

/** XORs one byte of a file. */
async function flipByte(path: string, offsetBytes: number, mask: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offsetBytes);
    byte[0] = byte[0]! ^ mask;
    await handle.write(byte, 0, 1, offsetBytes);
  } finally {
    await handle.close();
  }
}

/** Where group 0's structures are, by dumpe2fs. */
function group0(dump: Dump): { gdtBlock: number; bitmapBlock: number; firstBlock: number; firstFree: number } {
  const g =
    /^Group 0: \(Blocks (\d+)-[\s\S]*?Group descriptors at (\d+)[\s\S]*?Block bitmap at (\d+)[\s\S]*?^\s+Free blocks: (\d+)/m.exec(
      dump.text,
    )!;
  return { firstBlock: Number(g[1]), gdtBlock: Number(g[2]), bitmapBlock: Number(g[3]), firstFree: Number(g[4]) };
}

async function expectUntrusted(path: string, pattern: RegExp): Promise<void> {
  const map = await freeMapOf(path);
  expect(map.trusted).toBe(false);
  if (!map.trusted) expect(map.reason).toMatch(pattern);
}

describeIntegration('ext free map vs dumpe2fs', { tools: ['mke2fs', 'dumpe2fs', 'debugfs', 'e2fsck'] }, () => {
  beforeAll(async () => {
    dir = await mkdtemp('/tmp/sparsify-ext-');
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const layouts: Array<[string, number, string[]]> = [
    ['ext2', 256 * MiB, ['-t', 'ext2']],
    ['ext3', 256 * MiB, ['-t', 'ext3']],
    ['ext4 default', 1 * GiB, ['-t', 'ext4']],
    ['ext4 1 KiB blocks', 300 * MiB, ['-t', 'ext4', '-b', '1024']],
    ['ext3 2 KiB blocks', 300 * MiB, ['-t', 'ext3', '-b', '2048']],
    ['ext4 64 KiB blocks', 2 * GiB, ['-t', 'ext4', '-b', '65536']],
    ['ext4 bigalloc 64 KiB clusters', 9 * GiB, ['-t', 'ext4', '-O', 'bigalloc', '-C', '65536']],
    ['ext4 meta_bg', 600 * MiB, ['-t', 'ext4', '-b', '1024', '-O', 'meta_bg,^resize_inode']],
    ['ext4 ^64bit', 1 * GiB, ['-t', 'ext4', '-O', '^64bit']],
    ['ext4 ^flex_bg', 1 * GiB, ['-t', 'ext4', '-O', '^flex_bg']],
    ['ext4 uninit_bg (crc16)', 1 * GiB, ['-t', 'ext4', '-O', '^metadata_csum,uninit_bg']],
    ['ext4 sparse_super2', 2 * GiB, ['-t', 'ext4', '-O', 'sparse_super2']],
    ['ext4 mmp', 512 * MiB, ['-t', 'ext4', '-O', 'mmp']],
    ['ext2 ^sparse_super', 128 * MiB, ['-t', 'ext2', '-O', '^sparse_super,^resize_inode']],
    ['ext4 short last group', 1 * GiB + 5 * MiB + 12 * 1024, ['-t', 'ext4']],
    ['ext4 64 GiB, lazy journal (sparse)', 64 * GiB, ['-t', 'ext4', '-E', 'lazy_journal_init=1']],
  ];
  it.each(layouts)('%s: free map equals dumpe2fs', async (name, sizeBytes, args) => {
    const path = await mkfs(name.replace(/\W+/g, '-'), sizeBytes, args);
    await expectMatchesDumpe2fs(path);
  });

  it('ext4 4 GiB, mostly BLOCK_UNINIT groups', async () => {
    const path = await mkfs('uninit', 4 * GiB, ['-t', 'ext4']);
    const { map, dump } = await expectMatchesDumpe2fs(path);
    expect(dump.uninitGroups).toBeGreaterThan(20);
    expect(map.detail).toMatch(/BLOCK_UNINIT/);
  });

  it.each([
    ['ext2', ['-t', 'ext2', '-b', '1024']],
    ['ext4', ['-t', 'ext4']],
  ])('%s filled by debugfs, then some files deleted', async (name, args) => {
    const path = await mkfs(`filled-${name}`, 256 * MiB, args);
    const files = { a: 9, b: 17, c: 3, d: 33, e: 5 };
    await fillWithDebugfs(path, files, ['b', 'd']);
    fsck(path);
    const { map } = await expectMatchesDumpe2fs(path);
    const emptyMap = await freeMapOf(await mkfs(`empty-${name}`, 256 * MiB, args));
    if (!emptyMap.trusted) throw new Error(emptyMap.reason);
    const keptMiB = 9 + 3 + 5;
    expect(emptyMap.free.totalBytes - map.free.totalBytes).toBeGreaterThanOrEqual(keptMiB * MiB);
    expect(emptyMap.free.totalBytes - map.free.totalBytes).toBeLessThan((keptMiB + 1) * MiB);
  });

  it('never frees group 0 metadata or bytes past the filesystem', async () => {
    const path = await mkfs('bounds', 200 * MiB, ['-t', 'ext4', '-b', '1024']);
    const handle = await open(path, 'r+');
    await handle.truncate(220 * MiB);
    await handle.close();
    const { map } = await expectMatchesDumpe2fs(path);
    const meta = group0(dumpe2fs(path));
    expect(map.free.ranges[0]!.start).toBeGreaterThan(meta.bitmapBlock * 1024);
    expect(map.free.ranges.at(-1)!.end).toBeLessThanOrEqual(200 * MiB);
  });

  it.each([
    ['needs_recovery', 'feature needs_recovery', /needs recovery/],
    ['error state', 'ssv state 2', /errors/],
    ['error state, still valid', 'ssv state 3', /errors/],
    ['not cleanly unmounted', 'ssv state 0', /not cleanly unmounted/],
    ['orphan list', 'ssv last_orphan 12', /orphan inode list/],
    ['orphan_present', 'feature orphan_file,orphan_present', /orphan file/],
    ['superblock free count', 'ssv free_blocks_count 1000', /superblock says 1000/],
  ])('untrusted: %s', async (name, request, reason) => {
    const path = await mkfs(`trust-${name.replace(/\W+/g, '-')}`, 256 * MiB, ['-t', 'ext4']);
    setSuper(path, request);
    await expectUntrusted(path, reason);
  });

  it('untrusted: unknown incompat feature', async () => {
    const path = await mkfs('unknown-incompat', 64 * MiB, ['-t', 'ext4']);
    const incompat = (await readFile(path)).readUInt32LE(1024 + 0x60);
    setSuper(path, `ssv feature_incompat ${incompat | 0x40000}`);
    await expectUntrusted(path, /unknown incompat features 0x40000/);
  });

  it.each([
    ['ext4 (bitmap checksum)', ['-t', 'ext4'], /group 0: block bitmap checksum mismatch/],
    ['ext2 (bitmap population)', ['-t', 'ext2'], /group 0: its block bitmap has \d+ free blocks, its descriptor says/],
  ])('untrusted: a flipped bit in a block bitmap, %s', async (name, args, reason) => {
    const path = await mkfs(`flip-${name.replace(/\W+/g, '-')}`, 128 * MiB, args);
    const dump = dumpe2fs(path);
    const g = group0(dump);
    const bit = g.firstFree + 100 - g.firstBlock;
    await flipByte(path, g.bitmapBlock * dump.blockBytes + (bit >> 3), 1 << (bit & 7));
    await expectUntrusted(path, reason);
  });

  it('untrusted: a damaged group descriptor (checksum)', async () => {
    const path = await mkfs('gd-csum', 128 * MiB, ['-t', 'ext4']);
    const dump = dumpe2fs(path);
    const descriptor3 = group0(dump).gdtBlock * dump.blockBytes + 64 * 3;
    await flipByte(path, descriptor3 + 0xc, 0x01);
    await expectUntrusted(path, new RegExp(`group descriptor 3 at byte ${descriptor3}: checksum mismatch`));
  });

  it('a truncated image is untrusted, never read past its end', async () => {
    const path = await mkfs('truncated', 256 * MiB, ['-t', 'ext4']);
    const handle = await open(path, 'r+');
    await handle.truncate(200 * MiB);
    await handle.close();
    await expectUntrusted(path, /larger than its .*volume/);
  });

  it.each([
    ['metadata_csum', ['-t', 'ext4', '-b', '1024']],
    ['no checksums', ['-t', 'ext4', '-b', '1024', '-O', '^metadata_csum']],
  ])('fuzz (%s): damaged copies of a real ext4 give a map or BAD_IMAGE', async (name, args) => {
    const path = await mkfs(`fuzz-${name.replace(/\W+/g, '-')}`, 16 * MiB, args);
    await fillWithDebugfs(path, { a: 1, b: 2 }, ['a']);
    const g = group0(dumpe2fs(path));
    // The superblock, the descriptor table and the bitmaps, and now and then anywhere in 1 MiB.
    const zones: Array<[number, number]> = [[1024, 1024], [g.gdtBlock * 1024, 1024], [g.bitmapBlock * 1024, 4096], [0, MiB]];
    const pristine = new Uint8Array(await readFile(path));
    const truth = await freeMapOf(path);
    if (!truth.trusted) throw new Error(truth.reason);
    let seed = 7;
    const next = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const outcomes = { trusted: 0, untrusted: 0, bad: 0 };
    for (let i = 0; i < 200; i++) {
      const image = pristine.slice();
      for (let k = 1 + next(4); k > 0; k--) {
        const [at, length] = zones[next(zones.length)]!;
        const offset = at + next(length);
        image[offset] = image[offset]! ^ (1 << next(8));
      }
      const reader: BlockReader = {
        sizeBytes: image.length,
        read: (off, len) =>
          off < 0 || off + len > image.length
            ? Promise.reject(new RangeError(`read ${off}+${len} outside the image`))
            : Promise.resolve(image.slice(off, off + len)),
      };
      try {
        const map = await readExtFreeMap(reader);
        outcomes[map.trusted ? 'trusted' : 'untrusted']++;
        // One to four flipped bits never make a used block look free.
        if (map.trusted) expect(map.free.subtract(truth.free).ranges).toEqual([]);
      } catch (err) {
        if (!isSparsifyError(err, 'BAD_IMAGE')) throw err;
        outcomes.bad++;
      }
    }
    expect(outcomes.untrusted).toBeGreaterThan(0);
  });
});

describeIntegration(
  'ext free map after kernel writes',
  { tools: ['mke2fs', 'dumpe2fs', 'e2fsck', 'losetup', 'mount', 'umount', 'cp'], root: true },
  () => {
    let loopDevice: string | undefined;
    let mountPoint: string | undefined;

    beforeAll(async () => {
      dir = await mkdtemp('/tmp/sparsify-ext-');
    });
    afterAll(async () => {
      if (mountPoint) run('umount', [mountPoint]);
      if (loopDevice) run('losetup', ['-d', loopDevice]);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('files written then some deleted through a kernel mount; a copy taken while mounted is untrusted', async () => {
      const path = await mkfs('kernel', 1 * GiB, ['-t', 'ext4']);
      loopDevice = run('losetup', ['-f', '--show', path]).trim();
      mountPoint = join(dir, 'mnt');
      await mkdir(mountPoint);
      run('mount', ['-t', 'ext4', loopDevice, mountPoint]);
      for (let i = 0; i < 12; i++) await writeFile(join(mountPoint, `f${i}`), randomBytes((i + 1) * 3 * MiB));
      run('sync', []);
      for (let i = 0; i < 12; i += 3) await rm(join(mountPoint, `f${i}`));
      run('sync', []);
      const whileMounted = join(dir, 'mounted-copy.img');
      run('cp', ['--sparse=always', path, whileMounted]);
      run('umount', [mountPoint]);
      mountPoint = undefined;
      run('losetup', ['-d', loopDevice]);
      loopDevice = undefined;

      fsck(path);
      const { map } = await expectMatchesDumpe2fs(path);
      const empty = await freeMapOf(await mkfs('kernel-empty', 1 * GiB, ['-t', 'ext4']));
      if (!empty.trusted) throw new Error(empty.reason);
      const keptBytes = [1, 2, 4, 5, 7, 8, 10, 11].reduce((sum, i) => sum + (i + 1) * 3 * MiB, 0);
      expect(empty.free.totalBytes - map.free.totalBytes).toBeGreaterThanOrEqual(keptBytes);
      expect(empty.free.totalBytes - map.free.totalBytes).toBeLessThan(keptBytes + 2 * MiB);
      await expectUntrusted(whileMounted, /needs recovery/);
    });
  },
);
