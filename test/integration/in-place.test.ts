import { execFileSync } from 'node:child_process';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli, spawnCli, waitForExit, waitForOutput } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { livenessOf, readSelfIdentity } from '../../src/host/process-identity.js';
import { readWorkDirOwner } from '../../src/host/work-dir.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File, verifyImage } from '../helpers/verify.js';
import { startVmHolding, stopVm } from '../helpers/vm.js';

const MiB = 1024 * 1024;
const TOOLS = ['qemu-img', 'qemu-io', 'qemu-storage-daemon', 'qemu-system-x86_64', 'losetup', 'fstrim', 'ntfs-3g', 'nbdfuse'];
const GARBAGE_MIB = 96;

describeIntegration('in-place mode', { tools: TOOLS, root: true }, () => {
  let multi: BuiltImage;
  let dir: string;
  let tmp: string;

  beforeAll(async () => {
    multi = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs', 'ntfs', 'vfat', 'swap', 'btrfs'], size: '2G', fillMiB: 24, garbageMiB: GARBAGE_MIB, seed: 3 });
    dir = await makeRunTmp();
    tmp = join(dir, 'tmp');
    await mkdir(tmp);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A private copy of an image in the wanted format. */
  async function copyAs(image: BuiltImage, format: 'raw' | 'qcow2', name: string): Promise<string> {
    const path = join(dir, `${name}.${format}`);
    if (format === image.format) await copyImage(image.imagePath, path);
    else execFileSync('qemu-img', ['convert', '-f', image.format, '-O', format, image.imagePath, path]);
    return path;
  }

  async function inPlace(path: string, args: string[] = [], tmpDir = tmp) {
    const json = `${path}.json`;
    const r = await runCli(['--in-place', '--json', json, ...args, path], { TMPDIR: tmpDir });
    expect(await leftoversUnder(tmpDir)).toEqual([]);
    const report = r.exitCode === 0 ? await readReport(json) : undefined;
    return { r, report };
  }

  /** sparsify's work directories in /tmp, where a TMPDIR too deep for a unix socket sends them. */
  const strays = async () => (await readdir('/tmp')).filter((n) => /^sparsify-[A-Za-z0-9]{6}$/.test(n));

  /**
   * The strays made since `before` whose owner is no longer running. Other suites run at once and
   * have their own live work directories in /tmp: a stray is one whose owner (the marker every
   * work directory carries) has gone.
   */
  async function deadStrays(before: readonly string[]): Promise<string[]> {
    const self = await readSelfIdentity();
    const dead: string[] = [];
    for (const n of (await strays()).filter((n) => !before.includes(n))) {
      const owner = await readWorkDirOwner(join('/tmp', n));
      if (!owner || (await livenessOf(owner, self)) !== 'alive') dead.push(n);
    }
    return dead;
  }

  // From a TMPDIR too long for a unix socket below it: one run serves both checks (each run launches
  // the appliance for btrfs, 20-30 s under TCG).
  it.each(['raw', 'qcow2'] as const)('%s: the file shrinks by ≥ 90%% of the deleted data; files identical, fsck clean; a deep TMPDIR still works and leaves nothing behind', async (format) => {
    const deep = join(dir, `deep-${format}`, 'a-very-long-directory-name-for-temporary-files'.repeat(2), 'and-deeper-still');
    await mkdir(deep, { recursive: true });
    const straysBefore = await strays();
    const path = await copyAs(multi, format, `multi-${format}`);
    const before = await allocatedBytes(path);
    const { r, report } = await inPlace(path, ['--format', format], deep);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await deadStrays(straysBefore)).toEqual([]);
    const after = await allocatedBytes(path);
    expect(report!.allocatedBytesAfter).toBe(after);
    const reclaimable = report!.volumes.length * GARBAGE_MIB * MiB;
    expect(before - after).toBeGreaterThanOrEqual(0.9 * reclaimable);
    for (const v of report!.volumes) {
      expect(v.handled, v.name).toMatch(/^(trimmed|free blocks discarded)$/);
    }
    const verdict = await verifyImage(path, format, multi.manifestPath);
    expect(verdict.problems).toEqual([]);
  });

  it('a volume that cannot trim gets the warning (--engine mount: no vfat driver); --ignore silences it', async () => {
    const warned = await inPlace(await copyAs(multi, 'raw', 'warned'), ['--format', 'raw', '--engine', 'mount']);
    expect(warned.r.exitCode, warned.r.stderr).toBe(0);
    expect(warned.r.stderr).toMatch(/fstrim operation is not supported on \/dev\/sda4 \(vfat.*Suppress this warning using '--ignore \/dev\/sda4'/);
    const path = await copyAs(multi, 'raw', 'ignored');
    const { r, report } = await inPlace(path, ['--format', 'raw', '--engine', 'mount', '--ignore', '/dev/sda4']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/fstrim operation is not supported/);
    expect(report!.volumes.find((v) => v.name === '/dev/sda4')!.handled).toBe('left alone');
  });

  it("libguestfs' in-place test, adapted: 300 MB written and deleted → the image shrinks by more than 300 MB", async () => {
    const image = await buildImage({ layout: 'gpt', fs: ['ext4'], size: '600M', fillMiB: 8, garbageMiB: 300, seed: 21 });
    const path = await copyAs(image, 'raw', 'libguestfs');
    const before = await allocatedBytes(path);
    expect(before).toBeGreaterThan(310 * 1000 * 1024);
    const { r } = await inPlace(path, ['--format', 'raw']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(before - (await allocatedBytes(path))).toBeGreaterThan(300 * 1000 * 1024);
    expect((await verifyImage(path, 'raw', image.manifestPath)).ok).toBe(true);
  });

  it.each(['raw', 'qcow2'] as const)('an image held open for writing by another qemu is refused and unchanged (%s)', async (format) => {
    const path = await copyAs(multi, format, `busy-${format}`);
    const sha = await sha256File(path);
    const vm = await startVmHolding(path, format);
    try {
      const { r } = await inPlace(path, ['--format', format]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/in use by another process/);
    } finally {
      await stopVm(vm);
    }
    expect(await sha256File(path)).toBe(sha);
  });

  it('--zero: the whole volume reads back as zero, and its space goes back to the host', async () => {
    const path = await copyAs(multi, 'raw', 'zeroed');
    const vol = multi.manifest.volumes.find((v) => v.fs === 'ext4')!;
    const before = await allocatedBytes(path);
    const { r, report } = await inPlace(path, ['--format', 'raw', '--zero', vol.name]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(report!.volumes.find((v) => v.name === vol.name)!.handled).toBe('zeroed');
    const fh = await open(path, 'r');
    try {
      const chunk = Buffer.alloc(4 * MiB);
      for (let off = 0; off < vol.sizeBytes; off += chunk.length) {
        const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, vol.sizeBytes - off), vol.offsetBytes + off);
        expect(chunk.subarray(0, bytesRead).every((b) => b === 0), `byte run at ${off}`).toBe(true);
      }
    } finally {
      await fh.close();
    }
    expect(before - (await allocatedBytes(path))).toBeGreaterThan(vol.liveBytes);
  });

  it('qcow2: clusters freed in the refcounts but still allocated in the file are punched out', async () => {
    const disk = join(dir, 'refcounts.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 16M', disk]);
    // A discard on the qcow2 node only, as a VM without discard passed to the file does it.
    const opts = `driver=qcow2,discard=unmap,file.driver=file,file.filename=${disk},file.discard=ignore`;
    execFileSync('qemu-io', ['--image-opts', opts, '-c', 'discard 2M 8M']);
    const reference = join(dir, 'refcounts-reference.raw');
    execFileSync('qemu-img', ['convert', '-O', 'raw', disk, reference]);
    const before = await allocatedBytes(disk);
    const json = `${disk}.json`;
    const r = await runCli(['--in-place', '--format', 'qcow2', '--json', json, disk], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(0);
    // 8 MiB of clusters are freed; the host filesystem may spend a block or two of its own
    // extent tree on the new holes, so allow 64 KiB of slack.
    expect(before - (await allocatedBytes(disk))).toBeGreaterThanOrEqual(8 * MiB - 64 * 1024);
    const report = await readReport(json);
    expect(report.notes?.join(' ')).toMatch(/qcow2: the file's free clusters/);
    execFileSync('qemu-img', ['check', '-q', disk]);
    execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', disk, reference]);
    expect(await leftoversUnder(tmp)).toEqual([]);
  });

  it('an image format that cannot discard exits 3 and is left untouched', async () => {
    const path = join(dir, 'disk.vdi');
    execFileSync('qemu-img', ['convert', '-O', 'vdi', multi.imagePath, path]);
    const sha = await sha256File(path);
    const { r } = await inPlace(path);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/^sparsify: error: discard\/trim is not supported/m);
    expect(await sha256File(path)).toBe(sha);
  });

  it('Ctrl-C stops between volumes: exit 1, filesystems consistent, nothing attached', async () => {
    const path = await copyAs(multi, 'raw', 'interrupted');
    const child = spawnCli(['--in-place', '--machine-readable', '--engine', 'mount', '--format', 'raw', path], { TMPDIR: tmp });
    const exited = waitForExit(child);
    await waitForOutput(child, (out) => /Trimming \/dev\/sda2/.test(out));
    child.kill('SIGINT');
    const r = await exited;
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/quit \(\^C\) at user request/);
    expect(r.stdout).not.toMatch(/Trimming \/dev\/sda3/);
    expect(await leftoversUnder(tmp)).toEqual([]);
    const verdict = await verifyImage(path, 'raw', multi.manifestPath);
    expect(verdict.problems).toEqual([]);
  });
});

