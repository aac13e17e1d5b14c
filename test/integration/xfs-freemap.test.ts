/**
 * The XFS map reader against xfsprogs' own view of real filesystems: free extents exactly as
 * `xfs_db freesp -d` lists them (minus the AGFL blocks, which freesp counts as free and the
 * bnobt does not), counters as the AGFs and the superblock say, and the log state as
 * `xfs_logprint -t` reports it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { mkdirSync, mkdtempSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ExtentSet } from '../../src/disk/extent-set.js';
import { openFileReader } from '../helpers/file-reader.js';
import type { FreeMap } from '../../src/fs/types.js';
import { readXfsFreeMap } from '../../src/fs/xfs/free-map.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** mkfs.xfs refuses filesystems under 300 MB; the 64 MiB minimum log must also fit in one AG. */
const SMALL = 400 * MiB;
const TOOLS = ['mkfs.xfs', 'xfs_db', 'xfs_logprint', 'xfs_admin', 'xfs_repair'];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp('/tmp/sparsify-xfs-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function run(cmd: string, args: readonly string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function db(img: string, ...commands: string[]): string {
  return run('xfs_db', ['-r', ...commands.flatMap((c) => ['-c', c]), img]);
}

/** `name = value` fields of an xfs_db print, as numbers. */
function fields(text: string): Record<string, number> {
  return Object.fromEntries([...text.matchAll(/^(\w+) = (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

async function mkfs(name: string, sizeBytes: number, args: readonly string[]): Promise<string> {
  const img = join(dir, name);
  await writeFile(img, '');
  await truncate(img, sizeBytes);
  run('mkfs.xfs', ['-q', '-f', ...args, img]);
  return img;
}

async function readMap(img: string): Promise<FreeMap> {
  const reader = await openFileReader(img);
  try {
    return await readXfsFreeMap(reader);
  } finally {
    await reader[Symbol.asyncDispose]();
  }
}

/** The active AGFL entries of AG `agno` (xfs_db prints every slot, stale ones too). */
function agflBlocks(img: string, agno: number, agf: Record<string, number>): number[] {
  const text = db(img, `agfl ${agno}`, 'print bno');
  const slots = Number(/bno\[0-(\d+)\]/.exec(text)![1]) + 1;
  const bySlot = new Map([...text.matchAll(/(\d+):(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]));
  return Array.from({ length: agf.flcount! }, (_, i) => bySlot.get((agf.flfirst! + i) % slots)!);
}

interface XfsDbView {
  readonly free: ExtentSet;
  readonly blockSize: number;
  readonly freeBlocks: number;
  /** Σ agf_freeblks + agf_flcount + agf_btreeblks. */
  readonly agfCounted: number;
  readonly fdblocks: number;
}

/** What xfsprogs says is free: freesp -d per-AG extents without the AGFL's blocks. */
function xfsDbView(img: string): XfsDbView {
  const sb = fields(db(img, 'sb 0', 'print blocksize agblocks agcount fdblocks'));
  const agfl = new Set<string>();
  let freeBlocks = 0;
  let agfCounted = 0;
  for (let agno = 0; agno < sb.agcount!; agno++) {
    const agf = fields(db(img, `agf ${agno}`, 'print flfirst fllast flcount freeblks btreeblks'));
    for (const b of agflBlocks(img, agno, agf)) agfl.add(`${agno}/${b}`);
    freeBlocks += agf.freeblks!;
    agfCounted += agf.freeblks! + agf.flcount! + agf.btreeblks!;
  }
  const ranges = [...db(img, 'freesp -d').matchAll(/^\s*(\d+)\s+(\d+)\s+(\d+)\s*$/gm)]
    .map((m) => [Number(m[1]), Number(m[2]), Number(m[3])] as const)
    .filter(([agno, agbno, len]) => !(len === 1 && agfl.has(`${agno}/${agbno}`)))
    .map(([agno, agbno, len]) => {
      const start = (agno * sb.agblocks! + agbno) * sb.blocksize!;
      return { start, end: start + len * sb.blocksize! };
    });
  return { free: ExtentSet.from(ranges), blockSize: sb.blocksize!, freeBlocks, agfCounted, fdblocks: sb.fdblocks! };
}

/** The map must be trusted and equal to xfsprogs' view, block for block. */
async function expectSameAsXfsDb(img: string): Promise<XfsDbView> {
  expect(run('xfs_logprint', ['-t', img])).toMatch(/state: <CLEAN>/);
  const map = await readMap(img);
  if (!map.trusted) throw new Error(`untrusted: ${map.reason}`);
  const view = xfsDbView(img);
  expect(map.unitBytes).toBe(view.blockSize);
  expect(map.free.ranges).toEqual(view.free.ranges);
  expect(map.counterFreeBytes).toBe(view.freeBlocks * view.blockSize);
  expect(view.fdblocks).toBe(view.agfCounted);
  expect(map.detail).not.toMatch(/lazy counters/);
  return view;
}

function bnoLevels(img: string): number {
  return fields(db(img, 'agf 0', 'print bnolevel')).bnolevel!;
}

describeIntegration('xfs free map: fresh filesystems against xfs_db', { tools: TOOLS }, () => {
  it.each([
    ['v5, 4 AGs, 4 KiB blocks', SMALL, []],
    ['v5, 16 AGs', 2 * GiB, ['-d', 'agcount=16']],
    ['v5, 1 KiB blocks', SMALL, ['-b', 'size=1024']],
    ['v5, 4 KiB sectors', SMALL, ['-s', 'size=4096']],
    ['v5 with rmapbt', SMALL, ['-m', 'rmapbt=1']],
    ['v4', SMALL, ['-m', 'crc=0']],
    ['v4, 16 AGs, 1 KiB blocks', 2 * GiB, ['-m', 'crc=0', '-b', 'size=1024', '-d', 'agcount=16']],
    ['v4 without lazy counters', SMALL, ['-m', 'crc=0', '-l', 'lazy-count=0']],
    ['v5, 1 TiB sparse', 1024 * GiB, []],
  ])('%s', async (name, sizeBytes, args) => {
    const img = await mkfs(`${name.replace(/\W+/g, '-')}.img`, sizeBytes, args);
    try {
      await expectSameAsXfsDb(img);
    } finally {
      await rm(img);
    }
  });

  it('a log reformatted by xfs_admin -U (zeros, then records of the previous cycle) is clean', async () => {
    const img = await mkfs('admin-uuid.img', SMALL, []);
    run('xfs_admin', ['-U', 'generate', img]);
    await expectSameAsXfsDb(img);
  });

  it('a corrupted agf_freeblks (CRC resealed by xfs_db) is refused naming the AG', async () => {
    const img = await mkfs('agf-freeblks.img', SMALL, []);
    const freeblks = fields(db(img, 'agf 1', 'print freeblks')).freeblks!;
    run('xfs_db', ['-x', '-c', 'agf 1', '-c', `write freeblks ${freeblks + 5}`, img]);
    expect(await readMap(img)).toEqual({
      trusted: false,
      reason: `xfs AG 1: the bnobt holds ${freeblks} free blocks but agf_freeblks says ${freeblks + 5}`,
    });
  });

  it('a damaged AGF byte on v5 is a CRC mismatch naming the AG', async () => {
    const img = await mkfs('agf-crc.img', SMALL, []);
    const sb = fields(db(img, 'sb 0', 'print agblocks blocksize sectsize'));
    const fh = await open(img, 'r+');
    await fh.write(Buffer.from([0, 0, 0, 7]), 0, 4, 2 * sb.agblocks! * sb.blocksize! + sb.sectsize! + 52);
    await fh.close();
    expect(await readMap(img)).toEqual({ trusted: false, reason: 'xfs AG 2 AGF: CRC mismatch' });
  });
});

/** Attaches `img` to a loop device, mounts it, runs `body`, and always unmounts and detaches. */
function withMount(img: string, body: (mnt: string) => void): void {
  const mnt = mkdtempSync(join(dir, 'mnt-'));
  const loop = run('losetup', ['-f', '--show', img]).trim();
  try {
    run('mount', [loop, mnt]);
    try {
      body(mnt);
    } finally {
      run('umount', [mnt]);
    }
  } finally {
    run('losetup', ['-d', loop]);
    rmdirSync(mnt);
  }
}

/** Writes `count` files of `sizeBytes`, syncs, then deletes every other one: many small free extents. */
function fragment(mnt: string, count: number, sizeBytes: number): void {
  const data = Buffer.alloc(sizeBytes, 0x5a);
  mkdirSync(join(mnt, 'd'));
  for (let i = 0; i < count; i++) writeFileSync(join(mnt, 'd', `f${i}`), data);
  run('sync', []);
  for (let i = 0; i < count; i += 2) unlinkSync(join(mnt, 'd', `f${i}`));
}

describeIntegration(
  'xfs free map: filesystems used by the kernel',
  { tools: [...TOOLS, 'losetup', 'mount', 'umount', 'xfs_io', 'cp'], root: true },
  () => {
    it.each([
      ['v5, 4 AGs, 4 KiB blocks', SMALL, [], 8000, 3000, 2],
      ['v5, 16 AGs', 2 * GiB, ['-d', 'agcount=16'], 16000, 3000, 2],
      ['v5, 1 KiB blocks, three-level bnobt', 1 * GiB, ['-b', 'size=1024', '-d', 'agcount=2'], 40000, 1000, 3],
    ])('%s: many fragments', async (name, sizeBytes, args, files, fileBytes, levels) => {
      const img = await mkfs(`${name.replace(/\W+/g, '-')}.img`, sizeBytes, args);
      try {
        withMount(img, (mnt) => fragment(mnt, files, fileBytes));
        expect(bnoLevels(img)).toBeGreaterThanOrEqual(levels);
        const view = await expectSameAsXfsDb(img);
        expect(view.free.ranges.length).toBeGreaterThan(files / 4);
      } finally {
        await rm(img);
      }
    });

    it('a dirty log (image copied while mounted) is refused; after replay or xfs_repair -L it is trusted', async () => {
      const img = await mkfs('live.img', SMALL, []);
      const copy = join(dir, 'live-copy.img');
      withMount(img, (mnt) => {
        for (let i = 0; i < 200; i++) writeFileSync(join(mnt, `g${i}`), `file ${i}\n`);
        run('sync', []);
        run('cp', ['--sparse=always', img, copy]);
      });
      expect(run('xfs_logprint', ['-t', copy])).toMatch(/state: <DIRTY>/);
      const dirty = await readMap(copy);
      expect(dirty).toMatchObject({ trusted: false, reason: expect.stringMatching(/^xfs log/) });
      run('cp', ['--sparse=always', copy, `${copy}.repair`]);
      withMount(copy, () => undefined);
      await expectSameAsXfsDb(copy);
      run('xfs_repair', ['-L', `${copy}.repair`]);
      await expectSameAsXfsDb(`${copy}.repair`);
    });

    it('a filesystem shut down while mounted has a dirty log', async () => {
      const img = await mkfs('shutdown.img', SMALL, []);
      withMount(img, (mnt) => {
        for (let i = 0; i < 100; i++) writeFileSync(join(mnt, `h${i}`), `file ${i}\n`);
        run('sync', []);
        run('xfs_io', ['-x', '-c', 'shutdown', mnt]);
      });
      expect(run('xfs_logprint', ['-t', img])).toMatch(/state: <DIRTY>/);
      expect(await readMap(img)).toMatchObject({ trusted: false, reason: expect.stringMatching(/xfs log is dirty/) });
    });
  },
);
