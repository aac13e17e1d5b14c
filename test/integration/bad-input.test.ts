import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli, spawnCli, waitForExit, waitForOutput, type CliResult } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';
import { startVmHolding, stopVm } from '../helpers/vm.js';

const TOOLS = ['qemu-img', 'qemu-storage-daemon', 'qemu-system-x86_64', 'losetup', 'fstrim', 'sgdisk'];

describeIntegration('bad input: one-line error, documented exit code, nothing lost or left', { tools: TOOLS, root: true }, () => {
  let base: BuiltImage;
  let dir: string;
  let work: string;

  beforeAll(async () => {
    base = await buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 8, garbageMiB: 16, seed: 5 });
    dir = await makeRunTmp();
    work = join(dir, 'work');
    await mkdir(work);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs sparsify IN OUT and checks the shape every failure must have. */
  async function fails(input: string, args: string[] = [], out = join(dir, 'out.qcow2')): Promise<CliResult> {
    const r = await runCli(['--tmp', work, ...args, input, out]);
    expect(r.exitCode).not.toBe(0);
    const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'));
    expect(errorLines, r.stderr).toHaveLength(1);
    expect(await leftoversUnder(work)).toEqual([]);
    expect((await readdir(dir)).filter((n) => n.includes('out.'))).toEqual([]);
    return r;
  }

  it('missing file', async () => {
    const r = await fails(join(dir, 'nope.qcow2'));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/does not exist|No such file/);
  });

  it('not a disk image', async () => {
    const text = join(dir, 'notes.txt');
    await writeFile(text, 'these are not the sectors you are looking for\n');
    const r = await fails(text);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/not a disk image/);
  });

  it('truncated qcow2', async () => {
    const q = join(dir, 'truncated.qcow2');
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', base.imagePath, q]);
    const { size } = await (await open(q)).stat();
    await truncate(q, Math.floor(size / 2));
    const r = await fails(q);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/damaged|truncated|corrupt/i);
  });

  it('wrong --format points to --convert', async () => {
    const r = await fails(base.imagePath, ['--format', 'qcow2']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/not a qcow2 image/);
    expect(r.stderr).toMatch(/--convert/);
  });

  it('broken partition table (both GPT headers damaged)', async () => {
    const img = join(dir, 'broken-gpt.img');
    await copyImage(base.imagePath, img);
    const fh = await open(img, 'r+');
    const { size } = await fh.stat();
    await fh.write(Buffer.alloc(512, 0xaa), 0, 512, 512);
    await fh.write(Buffer.alloc(512, 0xaa), 0, 512, size - 512);
    await fh.close();
    const sha = await sha256File(img);
    const r = await fails(img, ['--format', 'raw']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/GPT/);
    expect(await sha256File(img)).toBe(sha);
    // The hint's way out: --no-zero copies the disk as it is.
    const out = join(dir, 'broken-gpt-copy.raw');
    const copied = await runCli(['--tmp', work, '--format', 'raw', '--no-zero', img, out]);
    expect(copied.exitCode, copied.stderr).toBe(0);
    expect(copied.stderr).toMatch(/GPT .*copied as it is \(--no-zero\)/);
    execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', img, out]);
    await rm(out);
  });

  it('a damaged primary GPT header is not an error: the backup is used, with a warning', async () => {
    const img = join(dir, 'primary-gpt.img');
    await copyImage(base.imagePath, img);
    const fh = await open(img, 'r+');
    await fh.write(Buffer.alloc(92, 0xaa), 0, 92, 512);
    await fh.close();
    const sha = await sha256File(img);
    const out = join(dir, 'primary-gpt-out.qcow2');
    const r = await runCli(['--tmp', work, '--format', 'raw', '--convert', 'qcow2', img, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/primary GPT header damaged: used the backup/);
    expect(r.stdout).toMatch(/\/dev\/sda1 +ext4 +(map|appliance|mount) +(trimmed|free blocks skipped)/);
    expect(await sha256File(img)).toBe(sha);
    await rm(out, { force: true });
  });

  it.each(['raw', 'qcow2'] as const)('image in use by a running VM (%s)', async (format) => {
    const img = join(dir, `busy.${format}`);
    execFileSync('qemu-img', ['convert', '-O', format, base.imagePath, img]);
    const sha = await sha256File(img);
    const vm = await startVmHolding(img, format);
    try {
      const r = await fails(img, ['--format', format]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/in use by another process/);
    } finally {
      await stopVm(vm);
    }
    expect(await sha256File(img)).toBe(sha);
  });

  it('output exists: refused and untouched without --overwrite', async () => {
    const out = join(dir, 'existing.qcow2');
    await writeFile(out, 'precious');
    const r = await runCli(['--tmp', work, base.imagePath, out]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/already exists/);
    expect(r.stderr).toMatch(/--overwrite/);
    expect(await sha256File(out)).toBe(sha256OfText('precious'));
    await rm(out);
  });

  it('no space for the output: NO_SPACE, partial output removed', async () => {
    const small = join(dir, 'small');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small]);
    try {
      const r = await runCli(['--tmp', work, '--convert', 'raw', base.imagePath, join(small, 'out.raw')]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/no space/i);
      expect(await readdir(small)).toEqual([]);
      expect(await leftoversUnder(work)).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
  });

  it('--check-tmpdir=fail exits 2 when the temporary place is too small', async () => {
    const tiny = join(dir, 'tiny');
    await mkdir(tiny);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tiny]);
    try {
      // --engine mount: only a mount pass needs an overlay, hence temporary space.
      const r = await runCli(['--tmp', tiny, '--check-tmpdir', 'fail', '--engine', 'mount', base.imagePath, join(dir, 'out.qcow2')]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/not be enough free space/);
      expect(await readdir(tiny)).toEqual([]);
    } finally {
      execFileSync('umount', [tiny]);
    }
  });

  it('an encrypted qcow2 gets its own message (not "damaged"), with the way to decrypt it', async () => {
    const enc = join(dir, 'encrypted.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=letmein', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', enc, '64M']);
    const sha = await sha256File(enc);
    const r = await fails(enc);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/is an encrypted qcow2 image; sparsify cannot open encrypted images/);
    expect(r.stderr).toMatch(/hint: decrypt it first: qemu-img convert --object secret/);
    expect(r.stderr).not.toMatch(/damaged|check -r all/);
    expect(await sha256File(enc)).toBe(sha);
  });

  it('-o with raw output is refused with one line saying what to do', async () => {
    const r = await fails(base.imagePath, ['-f', 'raw', '-o', 'preallocation=full'], join(dir, 'out.raw'));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/-o cannot be used for raw output/);
    expect(r.stderr).toMatch(/hint: remove -o, or add --convert qcow2/);
  });

  it('a qemu-storage-daemon killed mid-copy: one line saying it died, no output, nothing left', async () => {
    // A qcow2 input with a backing file: its bytes come through the daemon (a raw input, or a
    // plain qcow2, is read from its file, and the copy may rightly finish without the daemon).
    const random = join(dir, 'noisy-backing.raw');
    execFileSync('dd', ['if=/dev/urandom', `of=${random}`, 'bs=1M', 'count=192', 'status=none']);
    const noisy = join(dir, 'noisy.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', random, '-F', 'raw', noisy]);
    const out = join(dir, 'out.qcow2');
    const child = spawnCli(['--tmp', work, '-f', 'qcow2', '--compress', '--machine-readable', noisy, out]);
    const exit = waitForExit(child);
    await waitForOutput(child, (o) => /^\d+\/\d+$/m.test(o));
    const daemon = await pidOf('qemu-storage-daemon', noisy);
    process.kill(daemon, 'SIGKILL');
    const r = await exit;
    expect(r.exitCode).toBe(1);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'))).toEqual([
      `sparsify: error: qemu-storage-daemon serving ${noisy} died (killed by SIGKILL)`,
    ]);
    expect(r.stderr).not.toMatch(/broke the protocol/);
    expect(await leftoversUnder(work)).toEqual([]);
    expect((await readdir(dir)).filter((n) => n.includes('out.'))).toEqual([]);
    await rm(noisy);
    await rm(random);
  });

  it('a qcow2 with internal snapshots: copied, with a warning that they are not in the output', async () => {
    const snap = join(dir, 'snapshots.qcow2');
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', base.imagePath, snap]);
    execFileSync('qemu-img', ['snapshot', '-c', 'before-update', snap]);
    execFileSync('qemu-img', ['snapshot', '-c', 'after-update', snap]);
    const out = join(dir, 'snapshots-out.qcow2');
    const r = await runCli(['--tmp', work, '-q', snap, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: .*snapshots\.qcow2 has 2 internal snapshots: .* will not be in the output/);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', out], { encoding: 'utf8' })) as { snapshots?: unknown[] };
    expect(info.snapshots ?? []).toEqual([]);
    await rm(out);
    await rm(snap);
  });

  it('a garbage superblock is not an error: copied as is with a warning naming the volume', async () => {
    const img = join(dir, 'garbage-sb.img');
    await copyImage(base.imagePath, img);
    const vol = base.manifest.volumes[0]!;
    const fh = await open(img, 'r+');
    await fh.write(Buffer.alloc(1024, 0x5a), 0, 1024, vol.offsetBytes + 1024);
    await fh.close();
    const out = join(dir, 'garbage-out.qcow2');
    const r = await runCli(['--tmp', work, '--format', 'raw', img, out]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`warning: ${vol.name}: .*copied as is`));
    await rm(out);
  });
});

function sha256OfText(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The pid of the running `program` whose command line names `arg` (a daemon this test's run started). */
async function pidOf(program: string, arg: string): Promise<number> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0]?.endsWith(program) && argv.some((a) => a.includes(arg))) return Number(pid);
  }
  throw new Error(`no ${program} serving ${arg}`);
}
