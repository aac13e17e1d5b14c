/**
 * Export presets (issue 11): each preset's output is what `qemu-img info` says it should be and
 * holds the same disk as a plain sparsify to raw (the reference); Azure's VHD is a fixed VHD of a
 * whole number of MiB from an input that is not; explicit --convert/-o override a preset; the OVA
 * is a ustar archive whose OVF comes first, is well-formed XML with the right sizes, and whose
 * vmdk is identical to the reference; an OVA that cannot be written leaves nothing.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, readdir, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseStringPromise } from 'xml2js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { buildImage, copyImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File, verifyImage } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
/** The input's size is 200 MiB and 7 sectors: not a whole MiB. */
const EXTRA_BYTES = 7 * 512;
const TOOLS = ['qemu-img', 'qemu-storage-daemon', 'losetup', 'tar', 'xmllint', 'sfdisk'];

interface ImgInfo {
  readonly format: string;
  readonly 'virtual-size': number;
  readonly 'format-specific'?: { readonly type: string; readonly data: Record<string, unknown> };
}

async function info(path: string, format?: string): Promise<ImgInfo> {
  const { stdout } = await execFileAsync('qemu-img', ['info', '--output=json', ...(format ? ['-f', format] : []), path]);
  return JSON.parse(stdout) as ImgInfo;
}

/** `qemu-img compare` (sizes may differ: the larger image's extra bytes must read as zero). */
async function compare(a: string, aFormat: string, b: string, bFormat: string): Promise<string> {
  const r = await execFileAsync('qemu-img', ['compare', '-f', aFormat, '-F', bFormat, a, b]).catch((e: { stdout?: string; stderr?: string }) => e);
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

/** The 512-byte VHD footer at the end of the file: its cookie and disk type (2 fixed, 3 dynamic). */
async function vhdFooter(path: string): Promise<{ cookie: string; diskType: number; currentSize: number }> {
  const st = await stat(path);
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(512);
    await fh.read(buf, 0, 512, st.size - 512);
    return { cookie: buf.toString('latin1', 0, 8), diskType: buf.readUInt32BE(60), currentSize: Number(buf.readBigUInt64BE(48)) };
  } finally {
    await fh.close();
  }
}

/**
 * The file sector of each allocated grain of a sparse vmdk, in disk (LBA) order, read from its
 * grain directory and tables (VMDK 5 sparse extent header: little-endian, offsets in sectors).
 */
async function grainSectors(path: string): Promise<number[]> {
  const buf = await readFile(path);
  expect(buf.toString('latin1', 0, 4)).toBe('KDMV');
  const capacity = Number(buf.readBigUInt64LE(12));
  const grainSize = Number(buf.readBigUInt64LE(20));
  const gtEntries = buf.readUInt32LE(44);
  const gdSector = buf.readBigUInt64LE(56);
  expect(gdSector).not.toBe(0xffffffffffffffffn); // qemu writes the directory near the start
  const grains = Math.ceil(capacity / grainSize);
  const out: number[] = [];
  for (let g = 0; g < grains; g++) {
    const gt = buf.readUInt32LE(Number(gdSector) * 512 + Math.floor(g / gtEntries) * 4);
    if (gt === 0) continue;
    const sector = buf.readUInt32LE(gt * 512 + (g % gtEntries) * 4);
    if (sector > 1) out.push(sector); // 0: not allocated, 1: a zero grain
  }
  return out;
}

describeIntegration('export presets (--export, --ova)', { tools: TOOLS, root: true }, () => {
  let dir: string;
  let work: string;
  let input: string;
  let inputSize: number;
  /** A plain `sparsify --convert raw` of the input: what every preset's disk must hold. */
  let reference: string;

  beforeAll(async () => {
    const image = await buildImage({ layout: 'mbr', fs: ['ext4'], size: '200M', fillMiB: 24, garbageMiB: 32, format: 'raw' });
    dir = await makeRunTmp();
    work = join(dir, 'work');
    await mkdir(work);
    input = join(dir, 'in.raw');
    await copyImage(image.imagePath, input);
    // Seven sectors past the last partition: a size that is not a whole MiB (MBR does not mind).
    inputSize = 200 * MiB + EXTRA_BYTES;
    await truncate(input, inputSize);
    reference = join(dir, 'reference.raw');
    const r = await runCli(['--tmp', work, '-q', '--format', 'raw', '--convert', 'raw', input, reference]);
    expect(r.exitCode, r.stderr).toBe(0);
    // Every file of the fixture is in the reference (checked on its first 200 MiB, the fixture's size).
    const head = join(dir, 'reference-head.raw');
    await copyImage(reference, head);
    await truncate(head, 200 * MiB);
    expect((await verifyImage(head, 'raw', image.manifestPath)).problems).toEqual([]);
    await rm(head);
  }, 600_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function sparsify(args: string[], out: string): Promise<void> {
    const before = await sha256File(input);
    const r = await runCli(['--tmp', work, '-q', '--format', 'raw', ...args, input, out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await sha256File(input)).toBe(before);
    expect(await leftoversUnder(work)).toEqual([]);
  }

  it.each(['openstack', 'kubevirt'])('%s: a compressed qcow2 identical to the reference', async (preset) => {
    const out = join(dir, `${preset}.qcow2`);
    await sparsify(['--export', preset], out);
    const i = await info(out);
    expect(i.format).toBe('qcow2');
    expect(i['virtual-size']).toBe(inputSize);
    const { stdout } = await execFileAsync('qemu-img', ['check', '--output=json', out]).catch((e: { stdout: string }) => e);
    const check = JSON.parse(stdout) as { 'compressed-clusters'?: number; 'allocated-clusters': number };
    // The fill is random (stored as it is); the filesystem's metadata compresses.
    expect(check['compressed-clusters']).toBeGreaterThan(0);
    expect(await compare(reference, 'raw', out, 'qcow2')).toBe('Images are identical.');
    await rm(out);
  });

  it('vmware: a streamOptimized vmdk, its grains in disk order, identical to the reference', async () => {
    const out = join(dir, 'vmware.vmdk');
    await sparsify(['--export', 'vmware'], out);
    const i = await info(out);
    expect(i.format).toBe('vmdk');
    expect(i['format-specific']?.data['create-type']).toBe('streamOptimized');
    expect(i['virtual-size']).toBe(inputSize);
    expect((await stat(out)).size % 512).toBe(0);
    // The descriptor names the file by its final name, not the temporary one it was written under.
    expect((await readFile(out)).subarray(512, 64 * 1024).toString('utf8')).toMatch(/^RW \d+ SPARSE "vmware\.vmdk"$/m);
    expect(await compare(reference, 'raw', out, 'vmdk')).toBe('Images are identical.');
    // Written in order: each grain's place in the file grows with its place on the disk.
    const sectors = await grainSectors(out);
    expect(sectors.length).toBeGreaterThan(10);
    expect(sectors).toEqual([...sectors].sort((a, b) => a - b));
    await rm(out);
  });

  it('azure: a fixed VHD whose virtual size is the input’s rounded up to a whole MiB, the tail zero', async () => {
    const out = join(dir, 'azure.vhd');
    await sparsify(['--export', 'azure'], out);
    const i = await info(out, 'vpc');
    expect(i.format).toBe('vpc');
    const size = i['virtual-size'];
    expect(inputSize % MiB).not.toBe(0);
    expect(size % MiB).toBe(0);
    expect(size).toBe(201 * MiB);
    const footer = await vhdFooter(out);
    expect(footer).toEqual({ cookie: 'conectix', diskType: 2, currentSize: size });
    expect((await stat(out)).size).toBe(size + 512);
    // The first input-size bytes are the reference's; the bytes after them read as zero.
    const raw = join(dir, 'azure.raw');
    execFileSync('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', out, raw]);
    expect(await compare(reference, 'raw', raw, 'raw')).toMatch(/Images are identical\.$/);
    const fh = await open(raw, 'r');
    const tail = Buffer.alloc(size - inputSize);
    await fh.read(tail, 0, tail.length, inputSize);
    await fh.close();
    expect(tail.every((b) => b === 0)).toBe(true);
    await truncate(raw, inputSize);
    expect(await compare(reference, 'raw', raw, 'raw')).toBe('Images are identical.');
    await Promise.all([rm(out), rm(raw)]);
  });

  it.each([
    ['hyperv', 'vhdx'],
    ['virtualbox', 'vdi'],
  ])('%s: a %s identical to the reference', async (preset, format) => {
    const out = join(dir, `${preset}.${format}`);
    await sparsify(['--export', preset], out);
    const i = await info(out);
    expect(i.format).toBe(format);
    expect(i['virtual-size']).toBe(inputSize);
    expect(await compare(reference, 'raw', out, format)).toBe('Images are identical.');
    await rm(out);
  });

  it('explicit --convert and -o override a preset', async () => {
    const vdi = join(dir, 'vmware-as.vdi');
    await sparsify(['--export', 'vmware', '--convert', 'vdi'], vdi);
    expect((await info(vdi)).format).toBe('vdi');
    expect(await compare(reference, 'raw', vdi, 'vdi')).toBe('Images are identical.');
    const dynamic = join(dir, 'azure-dynamic.vhd');
    await sparsify(['--export', 'azure', '-o', 'subformat=dynamic'], dynamic);
    const footer = await vhdFooter(dynamic);
    expect(footer.diskType).toBe(3);
    // The preset's other key (force_size) and its size rounding stay.
    expect(footer.currentSize).toBe(201 * MiB);
    expect((await info(dynamic, 'vpc'))['virtual-size']).toBe(201 * MiB);
    const plain = join(dir, 'openstack-plain.qcow2');
    await sparsify(['--export', 'openstack', '--convert', 'qcow2', '-o', 'cluster_size=131072'], plain);
    expect((await info(plain)).format).toBe('qcow2');
    await Promise.all([rm(vdi), rm(dynamic), rm(plain)]);
  });

  it('--ova: a ustar archive, OVF first, then the manifest and a vmdk identical to the reference', async () => {
    const out = join(dir, 'web-01.ova');
    await sparsify(['--export', 'vmware', '--ova'], out);
    const { stdout: list } = await execFileAsync('tar', ['-tf', out]);
    expect(list.trim().split('\n')).toEqual(['web-01.ovf', 'web-01.mf', 'web-01-disk1.vmdk']);
    // POSIX ustar: magic "ustar\0", version "00" in the first header.
    const fh = await open(out, 'r');
    const header = Buffer.alloc(512);
    await fh.read(header, 0, 512, 0);
    await fh.close();
    expect(header.toString('latin1', 257, 265)).toBe('ustar\u000000');
    const x = join(dir, 'ova-x');
    await mkdir(x);
    execFileSync('tar', ['-xf', out, '-C', x]);
    const ovf = join(x, 'web-01.ovf');
    const vmdk = join(x, 'web-01-disk1.vmdk');
    execFileSync('xmllint', ['--noout', ovf]);
    const env = (await parseStringPromise(await readFile(ovf, 'utf8'))).Envelope;
    expect(Number(env.References[0].File[0].$['ovf:size'])).toBe((await stat(vmdk)).size);
    expect(env.References[0].File[0].$['ovf:href']).toBe('web-01-disk1.vmdk');
    const disk = env.DiskSection[0].Disk[0].$;
    expect(Number(disk['ovf:capacity'])).toBe(inputSize);
    expect(disk['ovf:capacityAllocationUnits']).toBe('byte');
    expect(disk['ovf:format']).toBe('http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized');
    expect(Number(disk['ovf:populatedSize'])).toBeGreaterThan(0);
    expect(Number(disk['ovf:populatedSize'])).toBeLessThanOrEqual(inputSize);
    const mf = await readFile(join(x, 'web-01.mf'), 'utf8');
    for (const name of ['web-01.ovf', 'web-01-disk1.vmdk']) {
      const digest = createHash('sha256').update(await readFile(join(x, name))).digest('hex');
      expect(mf).toContain(`SHA256(${name})= ${digest}\n`);
    }
    expect((await info(vmdk))['format-specific']?.data['create-type']).toBe('streamOptimized');
    expect(await compare(reference, 'raw', vmdk, 'vmdk')).toBe('Images are identical.');
    await rm(x, { recursive: true });
    await rm(out);
  });

  it('an OVA that cannot be written (its directory is full) leaves no .ova, no temporary file, nothing staged', async () => {
    const small = join(dir, 'small');
    await mkdir(small);
    // Room for nothing like the compressed disk: the archive fails midway with ENOSPC.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
    try {
      const out = join(small, 'full.ova');
      const r = await runCli(['--tmp', work, '-q', '--format', 'raw', '--export', 'vmware', '--ova', input, out]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/sparsify: error: .*(space|ENOSPC)/i);
      expect(await readdir(small)).toEqual([]);
      expect(await leftoversUnder(work)).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
  });

  it('refuses --ova without --export vmware before any work (exit 1, nothing written)', async () => {
    const out = join(dir, 'no.ova');
    const r = await runCli(['--tmp', work, '-q', '--export', 'azure', '--ova', input, out]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('--ova goes with --export vmware');
    await expect(stat(out)).rejects.toThrow();
    const u = await runCli(['--tmp', work, '-q', '--export', 'vmdk', input, out]);
    expect(u.exitCode).toBe(1);
    expect(u.stderr).toContain('unknown preset ‘vmdk’ (use one of openstack, kubevirt, vmware, azure, hyperv, virtualbox)');
  });
});
