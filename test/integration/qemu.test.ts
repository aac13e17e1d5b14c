import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { isSparsifyError } from '../../src/errors.js';
import { readMounts } from '../../src/host/mounts.js';
import { checkImage, createImage, readImageInfo } from '../../src/qemu/img.js';
import { serveImage } from '../../src/qemu/storage-daemon.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
const ctx = makeContext();
let dir: string;

async function qemuIo(file: string, format: string, command: string): Promise<void> {
  await execa('qemu-io', ['-f', format, '-c', command, file]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function ourMounts(): Promise<string[]> {
  return (await readMounts()).map((m) => m.mountPoint).filter((p) => p.startsWith(dir));
}

describeIntegration('qemu-img and qemu-storage-daemon wrappers', { tools: ['qemu-img', 'qemu-io', 'qemu-storage-daemon', 'nbdfuse', 'nbdinfo', 'nbdcopy', 'qemu-system-x86_64'] }, () => {
  beforeAll(async () => {
    dir = await mkdtemp('/tmp/sparsify-qemu-');
  });
  afterAll(async () => {
    expect(await ourMounts()).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  });

  it('reads raw, qcow2 and vmdk images', async () => {
    const raw = join(dir, 'a.raw');
    await createImage(ctx, { path: raw, format: 'raw', sizeBytes: 64 * MiB });
    await createImage(ctx, { path: join(dir, 'a.qcow2'), format: 'qcow2', sizeBytes: 64 * MiB, options: ['compat=1.1', 'cluster_size=131072'] });
    await createImage(ctx, { path: join(dir, 'a.vmdk'), format: 'vmdk', sizeBytes: 32 * MiB });
    expect(await readImageInfo(ctx, raw)).toMatchObject({ format: 'raw', virtualSizeBytes: 64 * MiB, probedRaw: true, backingChain: [] });
    expect(await readImageInfo(ctx, raw, { format: 'raw' })).toMatchObject({ probedRaw: false });
    expect(await readImageInfo(ctx, join(dir, 'a.qcow2'))).toMatchObject({
      format: 'qcow2', virtualSizeBytes: 64 * MiB, clusterSizeBytes: 131072, qcow2Compat: '1.1', corrupt: false, probedRaw: false,
    });
    expect(await readImageInfo(ctx, join(dir, 'a.vmdk'), { format: 'vmdk' })).toMatchObject({ format: 'vmdk', virtualSizeBytes: 32 * MiB });
  });

  it('says what is wrong with a bad input', async () => {
    const raw = join(dir, 'a.raw');
    await expect(readImageInfo(ctx, raw, { format: 'qcow2' })).rejects.toThrow(
      `${raw} is not a qcow2 image (it looks like raw); check --format, or use --convert to choose the output format`,
    );
    await expect(readImageInfo(ctx, join(dir, 'nope.img'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(readImageInfo(ctx, dir)).rejects.toMatchObject({ code: 'USAGE' });
    await expect(readImageInfo(ctx, '/dev/null')).rejects.toMatchObject({ code: 'BAD_IMAGE' });
    await expect(readImageInfo(ctx, raw, { format: 'bogus' })).rejects.toMatchObject({ code: 'USAGE' });
    await writeFile(join(dir, 'empty.img'), '');
    await expect(readImageInfo(ctx, join(dir, 'empty.img'))).rejects.toThrow(/is not a disk image \(it is empty\)/);
    await writeFile(join(dir, 'notes.txt'), 'hello\n');
    await expect(readImageInfo(ctx, join(dir, 'notes.txt'))).rejects.toThrow(/6 bytes is not a multiple of 512/);
  });

  it('follows the backing chain and reports a missing backing file', async () => {
    const base = join(dir, 'base.raw');
    await createImage(ctx, { path: base, format: 'raw', sizeBytes: 16 * MiB });
    const ov = join(dir, 'ov.qcow2');
    await createImage(ctx, { path: ov, format: 'qcow2', sizeBytes: 16 * MiB, options: ['compat=1.1'], backing: { path: base, format: 'raw' } });
    const info = await readImageInfo(ctx, ov, { format: 'qcow2' });
    expect(info).toMatchObject({ backingFile: base, backingFormat: 'raw', backingChain: [{ path: base, format: 'raw' }] });
    await rm(base);
    await expect(readImageInfo(ctx, ov)).rejects.toThrow(`backing file ${base} of ${ov} does not exist`);
  });

  it('refuses bad creation options with USAGE', async () => {
    await expect(
      createImage(ctx, { path: join(dir, 'x.qcow2'), format: 'qcow2', sizeBytes: MiB, options: ['cluster_size=3'] }),
    ).rejects.toMatchObject({ code: 'USAGE', message: expect.stringContaining('Cluster size must be a power of two') });
  });

  it('checks images: a truncated qcow2 is damaged, leaks-free ones pass, raw is not checked', async () => {
    const good = join(dir, 'data.qcow2');
    await createImage(ctx, { path: good, format: 'qcow2', sizeBytes: 64 * MiB });
    await qemuIo(good, 'qcow2', 'write -P 0xab 0 32M');
    expect(await checkImage(ctx, good, 'qcow2')).toMatchObject({ checked: true, corruptions: 0, leaks: 0 });
    expect(await checkImage(ctx, join(dir, 'a.raw'), 'raw')).toMatchObject({ checked: false });
    const cut = join(dir, 'cut.qcow2');
    await writeFile(cut, await readFile(good));
    await truncate(cut, Math.floor((await stat(good)).size / 2));
    // qemu-img info does not notice the missing half; only check does.
    expect((await readImageInfo(ctx, cut)).format).toBe('qcow2');
    await expect(checkImage(ctx, cut, 'qcow2')).rejects.toThrow(
      new RegExp(`^${cut} is damaged \\(qemu-img check: \\d+ corruptions.*\\); repair it with 'qemu-img check -r all' on a copy$`),
    );
  });

  it('serves over NBD, and as a FUSE file next to it; disposing leaves nothing behind', async () => {
    const img = join(dir, 'serve.qcow2');
    await createImage(ctx, { path: img, format: 'qcow2', sizeBytes: 16 * MiB });
    await qemuIo(img, 'qcow2', 'write -P 0x5a 1M 1M');
    const served = await serveImage(ctx, { file: img, format: 'qcow2', readOnly: false, discard: true, detectZeroes: 'unmap', fuse: true, dir });
    const uri = `nbd+unix:///${served.exportName}?socket=${served.socketPath}`;
    const { stdout } = await execa('nbdinfo', ['--json', uri]);
    expect(JSON.parse(stdout).exports[0]).toMatchObject({ 'export-size': 16 * MiB, is_read_only: false, can_trim: true });
    const fuseFile = served.fuseFile!;
    expect(await ourMounts()).toEqual([fuseFile]);
    const bytes = await readFile(fuseFile);
    expect(bytes.length).toBe(16 * MiB);
    expect(bytes.subarray(MiB, 2 * MiB).every((b) => b === 0x5a)).toBe(true);
    expect(bytes.subarray(0, MiB).every((b) => b === 0)).toBe(true);
    await served[Symbol.asyncDispose]();
    await served[Symbol.asyncDispose]();
    expect(alive(served.pid)).toBe(false);
    expect(await ourMounts()).toEqual([]);
    await expect(stat(served.socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(fuseFile)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses to serve an image in another format', async () => {
    await expect(serveImage(ctx, { file: join(dir, 'a.raw'), format: 'qcow2', readOnly: true, discard: false, dir })).rejects.toMatchObject({
      code: 'BAD_IMAGE',
    });
  });

  it('stops the daemon and unmounts the FUSE file after an abort, even undisposed', async () => {
    const controller = new AbortController();
    const actx = makeContext(undefined, controller.signal);
    const served = await serveImage(actx, { file: join(dir, 'a.qcow2'), format: 'qcow2', readOnly: true, discard: false, fuse: true, dir, abortGraceMs: 1500 });
    expect(await ourMounts()).toHaveLength(1);
    controller.abort();
    // The owner gets the grace period to unmount what it built on the FUSE file first.
    await sleep(300);
    expect(alive(served.pid)).toBe(true);
    await until('daemon exit', () => !alive(served.pid));
    await until('FUSE unmount', async () => (await ourMounts()).length === 0);
  });

  it('writes compressed clusters through the compress filter', async () => {
    const src = join(dir, 'src.raw');
    await createImage(ctx, { path: src, format: 'raw', sizeBytes: 8 * MiB });
    await execa('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 2M', '-c', 'write -P 0x22 4M 1M', src]);
    const out = join(dir, 'out.qcow2');
    await createImage(ctx, { path: out, format: 'qcow2', sizeBytes: 8 * MiB });
    {
      await using served = await serveImage(ctx, { file: out, format: 'qcow2', readOnly: false, discard: false, compress: true, dir });
      await execa('nbdcopy', ['--destination-is-zero', src, `nbd+unix:///${served.exportName}?socket=${served.socketPath}`]);
    }
    await execa('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', src, out]);
    const check = await execa('qemu-img', ['check', '--output=json', out]);
    expect(JSON.parse(check.stdout)['compressed-clusters']).toBeGreaterThan(0);
  });

  it('refuses an image a running VM holds open: IN_USE from info, check and serve', async () => {
    const img = join(dir, 'vm.qcow2');
    await createImage(ctx, { path: img, format: 'qcow2', sizeBytes: 16 * MiB });
    await mkdir(join(dir, 'vm'), { recursive: true });
    const vm: ChildProcess = spawn(
      'qemu-system-x86_64',
      ['-machine', 'none', '-nodefaults', '-display', 'none', '-drive', `file=${img},if=none,format=qcow2`],
      { stdio: 'ignore' },
    );
    try {
      await until('the VM to lock its disk', async () => {
        if (vm.exitCode !== null) throw new Error(`qemu-system-x86_64 exited with ${vm.exitCode}`);
        return readImageInfo(ctx, img).then(() => false, (err) => isSparsifyError(err, 'IN_USE'));
      });
      const message = `${img} is in use by another process (a running VM?); shut it down first`;
      await expect(readImageInfo(ctx, img, { format: 'qcow2' })).rejects.toThrow(message);
      await expect(checkImage(ctx, img, 'qcow2')).rejects.toMatchObject({ code: 'IN_USE' });
      await expect(serveImage(ctx, { file: img, format: 'qcow2', readOnly: true, discard: false, dir: join(dir, 'vm') })).rejects.toThrow(message);
      await expect(serveImage(ctx, { file: img, format: 'qcow2', readOnly: false, discard: true, dir: join(dir, 'vm') })).rejects.toMatchObject({ code: 'IN_USE' });
    } finally {
      vm.kill('SIGKILL');
    }
  });
});
