/**
 * What the output may be: a new or replaced regular file (renamed into place), an existing block
 * device (written into as a raw target, never replaced), or nothing else; and the one-line
 * errors for output paths that cannot be written.
 */
import { execFileSync } from 'node:child_process';
import { chmod, lstat, mkdir, open, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { CLI, leftoversUnder, makeRunTmp, runCli, type CliResult } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File, verifyImage } from '../helpers/verify.js';

const MiB = 1024 * 1024;

describeIntegration('outputs: block devices, special files, unwritable places', { tools: ['qemu-img', 'qemu-storage-daemon', 'losetup', 'runuser'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let work: string;
  /** The output of a plain run into a file: what every device must hold afterwards. */
  let reference: string;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 8, garbageMiB: 16, seed: 5 });
    dir = await makeRunTmp();
    work = join(dir, 'work');
    await mkdir(work);
    reference = join(dir, 'reference.raw');
    const r = await runCli(['--tmp', work, '-q', '-f', 'raw', image.imagePath, reference]);
    expect(r.exitCode, r.stderr).toBe(0);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A loop device over a file of `sizeMiB` filled with 0xaa, so every zero must be written. */
  async function withLoop<T>(name: string, sizeMiB: number, body: (loop: string, backing: string) => Promise<T>): Promise<T> {
    const backing = join(dir, name);
    await writeFile(backing, Buffer.alloc(sizeMiB * MiB, 0xaa));
    const loop = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
    try {
      return await body(loop, backing);
    } finally {
      execFileSync('losetup', ['-d', loop]);
      await rm(backing, { force: true });
    }
  }

  /** The run failed with one error line, left nothing in the work dir, and the target is untouched. */
  async function refused(r: CliResult, target: string, shaBefore: string | undefined, message: RegExp): Promise<void> {
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:')), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await leftoversUnder(work)).toEqual([]);
    if (shaBefore !== undefined) expect(await sha256File(target)).toBe(shaBefore);
  }

  function isBlockDevice(path: string): Promise<boolean> {
    return lstat(path).then((s) => s.isBlockDevice());
  }

  it('a block device is written into as a raw target: same bytes as a file output, still a device, the rest untouched', async () => {
    await withLoop('dev.img', 300, async (loop, backing) => {
      const r = await runCli(['--tmp', work, '-q', '-f', 'raw', '--overwrite', image.imagePath, loop]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(await isBlockDevice(loop)).toBe(true);
      expect((await readdir('/dev')).filter((n) => n.includes('.sparsify-'))).toEqual([]);
      execFileSync('cmp', ['-n', String(image.manifest.virtualSizeBytes), reference, loop]);
      const tail = Buffer.alloc(1 * MiB);
      const fh = await open(backing, 'r');
      await fh.read(tail, 0, tail.length, 299 * MiB);
      await fh.close();
      expect(tail.every((b) => b === 0xaa)).toBe(true);
      expect(await leftoversUnder(work)).toEqual([]);
    });
    expect((await verifyImage(reference, 'raw', image.manifestPath)).problems).toEqual([]);
  });

  it('a symbolic link to a block device (as /dev/VG/LV is) writes the device; the link stays', async () => {
    await withLoop('dev-link.img', 256, async (loop) => {
      const link = join(dir, 'lv-link');
      await symlink(loop, link);
      const r = await runCli(['--tmp', work, '-q', '-f', 'raw', '--overwrite', image.imagePath, link]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(await readlink(link)).toBe(loop);
      expect(await isBlockDevice(loop)).toBe(true);
      execFileSync('cmp', ['-n', String(image.manifest.virtualSizeBytes), reference, loop]);
      await rm(link);
    });
  });

  it('a block device is refused without --overwrite, when too small, for a non-raw format, and when mounted', async () => {
    await withLoop('small.img', 128, async (loop) => {
      const sha = await sha256File(loop);
      await refused(await runCli(['--tmp', work, '-f', 'raw', image.imagePath, loop]), loop, sha, /already exists \(a block device\)/);
      const small = await runCli(['--tmp', work, '-f', 'raw', '--overwrite', image.imagePath, loop]);
      await refused(small, loop, sha, /block device .* \(134217728 bytes\) is smaller than the input's virtual size \(268435456 bytes\)/);
    });
    await withLoop('big.img', 300, async (loop) => {
      const sha = await sha256File(loop);
      const qcow2 = await runCli(['--tmp', work, '-f', 'raw', '--overwrite', '--convert', 'qcow2', image.imagePath, loop]);
      await refused(qcow2, loop, sha, /cannot write a qcow2 image onto the block device/);
      execFileSync('mkfs.ext4', ['-q', loop]);
      const mnt = join(dir, 'mnt');
      await mkdir(mnt, { recursive: true });
      execFileSync('mount', [loop, mnt]);
      try {
        const busy = await runCli(['--tmp', work, '-f', 'raw', '--overwrite', image.imagePath, loop]);
        await refused(busy, loop, undefined, /output .*: it is in use \(mounted/);
      } finally {
        execFileSync('umount', [mnt]);
      }
    });
  });

  it('a directory, a FIFO and a character device are never replaced, even with --overwrite', async () => {
    const sub = join(dir, 'a-directory');
    await mkdir(sub);
    await refused(await runCli(['--tmp', work, '-f', 'raw', '--overwrite', image.imagePath, sub]), sub, undefined, /is a directory/);
    expect((await lstat(sub)).isDirectory()).toBe(true);
    const fifo = join(dir, 'a-fifo');
    execFileSync('mkfifo', [fifo]);
    await refused(await runCli(['--tmp', work, '-f', 'raw', '--overwrite', image.imagePath, fifo]), fifo, undefined, /is a FIFO/);
    expect((await lstat(fifo)).isFIFO()).toBe(true);
    const nullDev = await runCli(['--tmp', work, '-f', 'raw', '--overwrite', image.imagePath, '/dev/null']);
    await refused(nullDev, '/dev/null', undefined, /character device/);
    expect((await lstat('/dev/null')).isCharacterDevice()).toBe(true);
    expect((await readdir(dir)).filter((n) => n.includes('.partial'))).toEqual([]);
  });

  it('a symbolic link to a file: --overwrite replaces the file it points to and keeps the link', async () => {
    const target = join(dir, 'real-output.raw');
    const link = join(dir, 'link-output.raw');
    await writeFile(target, 'old');
    await symlink(target, link);
    const r = await runCli(['--tmp', work, '-q', '-f', 'raw', '--overwrite', image.imagePath, link]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await lstat(link)).isSymbolicLink()).toBe(true);
    expect(await sha256File(target)).toBe(await sha256File(reference));
    await rm(link);
    await rm(target);
  });

  it('an output name of 249 characters (legal) works: the temporary name is cut to fit', async () => {
    const out = join(dir, `${'n'.repeat(245)}.raw`);
    const r = await runCli(['--tmp', work, '-q', '-f', 'raw', image.imagePath, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await sha256File(out)).toBe(await sha256File(reference));
    expect((await readdir(dir)).filter((n) => n.includes('.partial'))).toEqual([]);
    await rm(out);
  });

  it.each([
    ['a missing directory', () => join(dir, 'no', 'such', 'out.raw'), /output .*out\.raw: the directory .*no\/such does not exist/],
    ['a name too long', () => join(dir, `${'x'.repeat(256)}.raw`), /output .*: the name is too long/],
    ['/proc', () => '/proc/out.raw', /output \/proc\/out\.raw: no file can be created in \/proc/],
  ])('an output in %s: one line naming the path, before any work', async (_, outOf, message) => {
    for (const convert of ['raw', 'qcow2']) {
      const r = await runCli(['--tmp', work, '-f', 'raw', '--convert', convert, image.imagePath, outOf()]);
      await refused(r, '', undefined, message);
      expect(r.stderr).toMatch(/sparsify: hint: /);
    }
  });

  it('an output on a read-only filesystem: one line, for raw and qcow2 output', async () => {
    const ro = join(dir, 'ro');
    await mkdir(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
    try {
      for (const convert of ['raw', 'qcow2']) {
        const r = await runCli(['--tmp', work, '-f', 'raw', '--convert', convert, image.imagePath, join(ro, 'out.img')]);
        await refused(r, '', undefined, /output .*ro\/out\.img: the filesystem is read-only/);
      }
    } finally {
      execFileSync('umount', [ro]);
    }
  });

  it('--tmp /proc: one line naming the temporary directory', async () => {
    const r = await runCli(['--tmp', '/proc', '-f', 'raw', image.imagePath, join(dir, 'tmp-proc.raw')]);
    await refused(r, '', undefined, /temporary directory \/proc: no file can be created in \/proc/);
    expect(r.stderr).toMatch(/hint: use --tmp with another directory/);
  });

  it('an output directory the user may not write: one line, not qemu-img\'s text (as an ordinary user)', async () => {
    const shared = join(dir, 'shared');
    await mkdir(shared);
    await chmod(dir, 0o755);
    await chmod(shared, 0o755);
    const input = join(shared, 'in.raw');
    execFileSync('cp', ['--sparse=always', image.imagePath, input]);
    await chmod(input, 0o644);
    const locked = join(shared, 'locked');
    await mkdir(locked);
    await chmod(locked, 0o755);
    for (const convert of ['raw', 'qcow2']) {
      const r = runAsNobody(['--tmp', '/tmp', '--engine', 'map', '-f', 'raw', '--convert', convert, input, join(locked, 'out.img')]);
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual([
        `sparsify: error: output ${join(locked, 'out.img')}: permission denied`,
        expect.stringMatching(/^sparsify: hint: /),
      ]);
    }
    expect(await readdir(locked)).toEqual([]);
    await rm(shared, { recursive: true });
  });
});

function runAsNobody(args: string[]): CliResult {
  try {
    const stdout = execFileSync('runuser', ['-u', 'nobody', '--', process.execPath, CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { exitCode: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { exitCode: e.status, stdout: e.stdout, stderr: e.stderr };
  }
}
