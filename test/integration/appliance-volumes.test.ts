/**
 * The appliance engine's per-volume rules on one GPT disk built here without any mount (random
 * bytes first, then mkfs, so every filesystem's free space holds garbage):
 *   1 f2fs    (no driver in sparsify, known by signature: the appliance's kernel mounts it)
 *   2 f2fs    signature only, the rest random (the appliance cannot mount it)
 *   3 btrfs
 *   4 swap    (the map engine's, even under --engine appliance: header kept)
 *   5 ext4    given to --zero (the map engine's)
 * One appliance run (--engine appliance, as an ordinary user) covers all five; two more runs
 * as root with no guestfish on PATH launch nothing: auto falls back to the mount engine with
 * its one-line notice, and --engine appliance is an error naming the package to install.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, mkdir, open, readdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { ensureTestUser, runCliAsUser } from '../helpers/ordinary-user.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { readBytes, sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const RUN_MS = 15 * 60_000;

/** The partitions, in order: size and how each is made from its random bytes. */
const PARTS = [
  { mib: 128, mkfs: ['mkfs.f2fs', '-q', '-f', '-t', '0', '-l', 'foreign'] },
  { mib: 16, mkfs: [] as string[] },
  { mib: 128, mkfs: ['mkfs.btrfs', '-q', '-f', '-K', '-L', 'pool'] },
  { mib: 8, mkfs: ['mkswap', '-L', 'swap'] },
  { mib: 16, mkfs: ['mkfs.ext4', '-q', '-F', '-E', 'nodiscard', '-L', 'zeroed'] },
] as const;

/** Partition n's byte range in the disk (1 MiB alignment, in order, from 1 MiB). */
function partition(n: number): { offset: number; size: number } {
  const before = PARTS.slice(0, n - 1).reduce((sum, p) => sum + p.mib, 0);
  return { offset: (1 + before) * MiB, size: PARTS[n - 1]!.mib * MiB };
}

/** A random file of `bytes`, written in 1 MiB chunks. */
async function randomFile(path: string, bytes: number): Promise<void> {
  const f = await open(path, 'w');
  try {
    for (let at = 0; at < bytes; at += MiB) await f.write(randomBytes(MiB), 0, MiB, at);
  } finally {
    await f.close();
  }
}

/** Writes `data` at `offset` of `file`. */
async function writeAt(file: string, offset: number, data: Uint8Array): Promise<void> {
  const f = await open(file, 'r+');
  try {
    await f.write(data, 0, data.length, offset);
  } finally {
    await f.close();
  }
}

/** An f2fs superblock's first bytes (magic, log sector size 9, log sectors per block 3, log block size 12): the probe says f2fs, the kernel refuses it. */
function f2fsSignatureOnly(): Buffer {
  const sb = Buffer.alloc(32);
  sb.writeUInt32LE(0xf2f52010, 0);
  sb.writeUInt32LE(9, 8);
  sb.writeUInt32LE(3, 12);
  sb.writeUInt32LE(12, 16);
  return sb;
}

/** The disk: GPT, the five partitions, each made from random bytes. */
async function buildDisk(dir: string): Promise<string> {
  const disk = join(dir, 'disk.raw');
  const totalMiB = 2 + PARTS.reduce((sum, p) => sum + p.mib, 0);
  await execFileAsync('truncate', ['-s', `${totalMiB}M`, disk]);
  const sgdisk = ['-Z', ...PARTS.flatMap((p, i) => ['-n', `${i + 1}:0:+${p.mib}M`]), disk];
  await execFileAsync('sgdisk', sgdisk);
  for (const [i, p] of PARTS.entries()) {
    const file = join(dir, `part${i + 1}`);
    await randomFile(file, p.mib * MiB);
    if (p.mkfs.length > 0) await execFileAsync(p.mkfs[0], [...p.mkfs.slice(1), file]);
    await execFileAsync('dd', [`if=${file}`, `of=${disk}`, 'bs=1M', `seek=${partition(i + 1).offset / MiB}`, 'conv=notrunc,sparse', 'status=none']);
    await rm(file);
  }
  await writeAt(disk, partition(2).offset + 1024, f2fsSignatureOnly());
  return disk;
}

/** A directory holding a link to every program of /usr/bin and /usr/sbin but guestfish: a host without libguestfs. */
async function pathWithoutLibguestfs(dir: string): Promise<string> {
  const bin = join(dir, 'bin');
  await mkdir(bin);
  for (const from of ['/usr/sbin', '/usr/bin']) {
    for (const name of await readdir(from)) {
      if (name === 'guestfish') continue;
      await symlink(join(from, name), join(bin, name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
  }
  return bin;
}

/**
 * What a run left under `tmp`: leftoversUnder's findings that were not there before it (a
 * loop device that lost its FUSE file counts wherever it comes from; another test's must not
 * fail this one).
 */
async function leftBy(tmp: string, before: readonly string[]): Promise<string[]> {
  return (await leftoversUnder(tmp)).filter((l) => !before.includes(l));
}

/** Whether `bytes` are all zero. */
function allZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

/** Runs fsck-like `argv` on partition n of `disk`, extracted to a file. */
async function checkPartition(dir: string, disk: string, n: number, argv: readonly string[]): Promise<void> {
  const file = join(dir, `check${n}`);
  const { offset, size } = partition(n);
  await execFileAsync('dd', [`if=${disk}`, `of=${file}`, 'bs=1M', `skip=${offset / MiB}`, `count=${size / MiB}`, 'conv=sparse', 'status=none']);
  try {
    await execFileAsync(argv[0]!, [...argv.slice(1), file]);
  } finally {
    await rm(file);
  }
}

describeIntegration(
  'the appliance engine per volume: a foreign filesystem, one it cannot mount, btrfs, swap, --zero; no libguestfs',
  { tools: ['runuser', 'useradd', 'sgdisk', 'mkfs.f2fs', 'fsck.f2fs', 'mkfs.btrfs', 'mkswap', 'mkfs.ext4', 'qemu-storage-daemon', 'guestfish', 'nbdfuse'], root: true },
  () => {
    let dir: string;
    let disk: string;
    let owner: { uid: number; gid: number };

    beforeAll(async () => {
      owner = ensureTestUser();
      dir = await makeRunTmp();
      await chown(dir, owner.uid, owner.gid);
      disk = await buildDisk(dir);
      await chown(disk, owner.uid, owner.gid);
    }, 300_000);
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it(
      '--engine appliance as an ordinary user: f2fs and btrfs trimmed in the appliance, the unmountable one copied as is with the reason, swap and --zero the map engine\'s',
      async () => {
        const sha = await sha256File(disk);
        const tmp = join(dir, 'tmp-appliance');
        await mkdir(tmp);
        await chown(tmp, owner.uid, owner.gid);
        const out = join(dir, 'out.raw');
        const json = join(dir, 'appliance.json');
        const before = await leftoversUnder(tmp);
        const args = ['--machine-readable', '--engine', 'appliance', '--zero', '/dev/sda5', '--format', 'raw', '--json', json, disk, out];
        const r = await runCliAsUser(args, { TMPDIR: tmp }, RUN_MS);
        expect(r.exitCode, r.stderr).toBe(0);
        const report = await readReport(json);
        const launch = report.phases.find((p) => p.name === 'appliance launch');
        console.log(`appliance launch: ${launch?.ms ?? '?'} ms of a ${report.totalMs} ms run`);
        const rows = report.volumes;
        expect(rows.map((v) => `${v.name} ${v.type} ${v.action} ${v.engine} ${v.handled}`)).toEqual([
          '/dev/sda1 f2fs appliance appliance trimmed',
          '/dev/sda2 f2fs appliance appliance copied as is',
          '/dev/sda3 btrfs appliance appliance trimmed',
          '/dev/sda4 swap swap map swap cleared',
          '/dev/sda5 ext4 zero map zeroed',
        ]);
        expect(rows[0]!.reason).toBe('f2fs (no map reader): free space trimmed in the appliance');
        expect(rows[1]!.reason).toMatch(/^cannot be mounted \(.+\)$/);
        expect(r.stderr).toContain(`/dev/sda2: ${rows[1]!.reason}: copied as is`);
        // Each trimmed filesystem was garbage in its free space: f2fs gives most of its 128 MiB
        // back; btrfs, whose mkfs allocates chunks of a small filesystem ahead, about half.
        expect(rows[0]!.reclaimedBytes).toBeGreaterThan(64 * MiB);
        expect(rows[2]!.reclaimedBytes).toBeGreaterThan(48 * MiB);
        // The appliance's steps are status lines (--machine-readable prints them).
        for (const line of ['Launch the libguestfs appliance', 'Mount /dev/sda1 in the appliance', 'Run fstrim on /dev/sda1', 'Mount /dev/sda2 in the appliance', 'Run fstrim on /dev/sda3']) {
          expect(r.stdout.split('\n'), line).toContain(line);
        }
        expect(r.stdout.split('\n').filter((l) => l === 'Launch the libguestfs appliance')).toHaveLength(1);
        expect(await sha256File(disk)).toBe(sha);
        expect(await leftBy(tmp, before)).toEqual([]);

        const same = async (n: number, from = 0, length = partition(n).size - from) => {
          const { offset } = partition(n);
          return Buffer.compare(await readBytes(disk, offset + from, length), await readBytes(out, offset + from, length)) === 0;
        };
        expect(await same(2), 'the unmountable volume, byte for byte').toBe(true);
        expect(await same(4, 0, 4096), 'the swap header page').toBe(true);
        expect(allZero(await readBytes(out, partition(4).offset + 4096, partition(4).size - 4096)), 'swap after its header').toBe(true);
        expect(allZero(await readBytes(out, partition(5).offset, partition(5).size)), 'the --zero volume').toBe(true);
        await checkPartition(dir, out, 1, ['fsck.f2fs', '-f']);
        await checkPartition(dir, out, 3, ['btrfs', 'check', '--readonly']);
      },
      RUN_MS,
    );

    it(
      'as root with no libguestfs: auto mounts btrfs in the host kernel with one notice, f2fs is kept saying what to install; --engine appliance is an error naming the package',
      async () => {
        const bin = await pathWithoutLibguestfs(dir);
        const tmp = await makeRunTmp();
        try {
          const json = join(dir, 'auto.json');
          const out = join(dir, 'auto.raw');
          const before = await leftoversUnder(tmp);
          const r = await runCli(['--format', 'raw', '--json', json, disk, out], { PATH: bin, TMPDIR: tmp });
          expect(r.exitCode, r.stderr).toBe(0);
          const rows = (await readReport(json)).volumes;
          expect(rows.map((v) => `${v.name} ${v.engine ?? '-'} ${v.handled}`)).toEqual([
            '/dev/sda1 - copied as is',
            '/dev/sda2 - copied as is',
            '/dev/sda3 mount trimmed',
            '/dev/sda4 map free blocks skipped',
            '/dev/sda5 map free blocks skipped',
          ]);
          expect(rows[0]!.reason).toContain('libguestfs-tools');
          const notices = r.stderr.split('\n').filter((l) => l.includes('mounted in the host kernel'));
          expect(notices).toEqual([expect.stringContaining('no libguestfs appliance: guest data of /dev/sda3 is mounted in the host kernel')]);
          expect(r.stdout + r.stderr).not.toContain('Launch the libguestfs appliance');
          expect(await leftBy(tmp, before)).toEqual([]);

          const forced = await runCli(['--engine', 'appliance', '--format', 'raw', disk, join(dir, 'forced.raw')], { PATH: bin, TMPDIR: tmp });
          expect(forced.exitCode).not.toBe(0);
          expect(forced.stderr).toMatch(/--engine appliance: libguestfs is not installed .*libguestfs-tools/);
        } finally {
          await rm(tmp, { recursive: true, force: true });
        }
      },
      RUN_MS,
    );
  },
);
