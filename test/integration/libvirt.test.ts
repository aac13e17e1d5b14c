/**
 * `sparsify -d DOMAIN` against a real libvirtd (test/helpers/libvirt.ts: a private one, in its
 * own mount namespace), over shut-off domains whose disks are dirty test images, and a domain
 * qemu runs (TCG; no OS boots, SeaBIOS spins: libvirt calls it running).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/libvirt/domain-xml.js';
import { leftoversUnder, makeRunTmp, runCli } from '../helpers/cli.js';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { domainXml, fileDisk, startLibvirtd, type Libvirtd } from '../helpers/libvirt.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File, verifyImage } from '../helpers/verify.js';

const MiB = 1024 * 1024;
const GARBAGE_MIB = 64;
const TOOLS = ['virsh', 'libvirtd', 'unshare', 'qemu-system-x86_64', 'qemu-img', 'qemu-storage-daemon', 'losetup'];

describeIntegration('libvirt domains (-d, -c)', { tools: TOOLS, root: true }, () => {
  let libvirtd: Libvirtd | undefined;
  let raw: BuiltImage;
  let qcow2: BuiltImage;
  let dir: string;
  let tmp: string;

  beforeAll(async () => {
    [raw, qcow2] = await Promise.all([
      buildImage({ layout: 'gpt', fs: ['ext4', 'xfs'], size: '1G', fillMiB: 16, garbageMiB: GARBAGE_MIB, seed: 17 }), // shared with other suites' fixture
      buildImage({ layout: 'mbr', fs: ['ext4'], size: '512M', fillMiB: 8, garbageMiB: GARBAGE_MIB, format: 'qcow2', seed: 14 }),
    ]);
    dir = await makeRunTmp();
    tmp = join(dir, 'tmp');
    await mkdir(tmp);
    libvirtd = await startLibvirtd();
  }, 900_000);

  afterAll(async () => {
    // Stops every domain, the daemon and any qemu it left, even when a test failed half-way.
    await libvirtd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  /** A private copy of a fixture. */
  async function disk(image: BuiltImage, name: string): Promise<string> {
    const path = join(dir, `${name}.${image.format}`);
    await copyImage(image.imagePath, path);
    return path;
  }

  async function define(name: string, disks: string[]): Promise<void> {
    const xmlPath = join(dir, `${name}.xml`);
    await writeFile(xmlPath, domainXml(name, disks));
    await libvirtd!.virsh(['define', '--validate', xmlPath]);
  }

  // A batch's journal goes under XDG_STATE_HOME: here, not the user's ~/.local/state.
  const sparsify = (args: string[]) => runCli(['-c', libvirtd!.uri, ...args], { TMPDIR: tmp, XDG_STATE_HOME: join(dir, 'state') });

  it('--in-place -d: every writable disk gives its free space back, files identical; read-only disks and cdroms are left alone, by name', async () => {
    const a = await disk(raw, 'inplace-a');
    const b = await disk(qcow2, 'inplace-b');
    const ro = await disk(qcow2, 'inplace-ro');
    const iso = join(dir, 'inplace.iso');
    await writeFile(iso, Buffer.alloc(MiB, 7));
    await define('inplace', [
      fileDisk(a, 'raw', 'vda'),
      fileDisk(b, 'qcow2', 'vdb'),
      fileDisk(ro, 'qcow2', 'vdc', '\n      <readonly/>'),
      `    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='${iso}'/><target dev='sda' bus='sata'/><readonly/></disk>`,
    ]);
    const before = { a: await allocatedBytes(a), b: await allocatedBytes(b), ro: await sha256File(ro), iso: await sha256File(iso) };
    const json = join(dir, 'inplace.json');
    const r = await sparsify(['--in-place', '-d', 'inplace', '--json', json]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('inplace: vdc left alone: read-only');
    expect(r.stdout).toContain('inplace: sda left alone: a cdrom');
    // Each fixture holds GARBAGE_MIB of deleted data per filesystem.
    expect(before.a - (await allocatedBytes(a))).toBeGreaterThanOrEqual(0.9 * 2 * GARBAGE_MIB * MiB);
    expect(before.b - (await allocatedBytes(b))).toBeGreaterThanOrEqual(0.9 * GARBAGE_MIB * MiB);
    expect(await sha256File(ro)).toBe(before.ro);
    expect(await sha256File(iso)).toBe(before.iso);
    expect((await verifyImage(a, 'raw', raw.manifestPath)).problems).toEqual([]);
    expect((await verifyImage(b, 'qcow2', qcow2.manifestPath)).problems).toEqual([]);
    const report = JSON.parse(await readFile(json, 'utf8'));
    expect(report.domains.map((d: { name: string; status: string }) => [d.name, d.status])).toEqual([['inplace', 'done']]);
    expect(report.disks.map((d: { target: string; report: { mode: string } }) => [d.target, d.report.mode])).toEqual([['vda', 'in-place'], ['vdb', 'in-place']]);
    expect(report.domains[0].skipped).toEqual([{ target: 'vdc', reason: 'read-only' }, { target: 'sda', reason: 'a cdrom' }]);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 600_000);

  it('copy mode, the domain by its UUID: --output-dir writes one output per disk named after it; --update-domain points the domain at them, libvirt validates it, the old definition is kept', async () => {
    const a = await disk(raw, 'copy-a');
    const b = await disk(qcow2, 'copy-b');
    await define('copied', [fileDisk(a, 'raw', 'vda'), fileDisk(b, 'qcow2', 'vdb')]);
    const inputs = { a: await sha256File(a), b: await sha256File(b) };
    const out = join(dir, 'small');
    await mkdir(out);
    const json = join(dir, 'copied.json');
    const uuid = (await libvirtd!.virsh(['domuuid', 'copied'])).trim();
    const r = await sparsify(['-d', uuid, '--output-dir', out, '--update-domain', '--json', json]);
    expect(r.exitCode, r.stderr).toBe(0);
    // The inputs are never written.
    expect(await sha256File(a)).toBe(inputs.a);
    expect(await sha256File(b)).toBe(inputs.b);
    const newA = join(out, 'copy-a.raw');
    const newB = join(out, 'copy-b.qcow2');
    expect((await verifyImage(newA, 'raw', raw.manifestPath)).problems).toEqual([]);
    expect((await verifyImage(newB, 'qcow2', qcow2.manifestPath)).problems).toEqual([]);
    expect(await allocatedBytes(newA)).toBeLessThan((await allocatedBytes(a)) - 0.9 * 2 * GARBAGE_MIB * MiB);
    const now = await parseDomainXml(await libvirtd!.virsh(['dumpxml', '--inactive', 'copied']));
    expect(now.disks.map((d) => [d.target, d.path, d.format])).toEqual([['vda', newA, 'raw'], ['vdb', newB, 'qcow2']]);
    // What libvirt now holds passes its own schema check once more, as a user's `virsh define` would.
    const again = join(dir, 'copied-again.xml');
    await writeFile(again, await libvirtd!.virsh(['dumpxml', '--inactive', 'copied']));
    await libvirtd!.virsh(['define', '--validate', again]);
    const previous = await parseDomainXml(await readFile(join(out, 'copied.previous.xml'), 'utf8'));
    expect(previous.disks.map((d) => d.path)).toEqual([a, b]);
    const report = JSON.parse(await readFile(json, 'utf8'));
    expect(report.domains[0]).toMatchObject({ name: 'copied', uuid, status: 'done' });
    expect(report.domains[0].update.previousDefinition).toContain(a);
    expect(report.domains[0].update.definition).toContain(newA);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 600_000);

  it('a domain started under TCG is refused by name and state, exit 4, in place and in copy mode; its disks are unchanged', async () => {
    const a = await disk(raw, 'running-a');
    await define('busy', [fileDisk(a, 'raw', 'vda')]);
    await libvirtd!.virsh(['start', 'busy']);
    try {
      expect((await libvirtd!.virsh(['domstate', 'busy'])).trim()).toBe('running');
      expect(await libvirtd!.virsh(['dumpxml', 'busy'])).toMatch(/^<domain type='qemu' id='\d+'>/);
      const before = await sha256File(a);
      const out = join(dir, 'busy-out');
      await mkdir(out);
      for (const args of [['--in-place', '-d', 'busy'], ['-d', 'busy', '--output-dir', out, '--update-domain']]) {
        const r = await sparsify(args);
        expect(r.exitCode, r.stderr).toBe(4);
        expect(r.stderr.split('\n')[0]).toBe('sparsify: error: domain ‘busy’ is running: sparsify only works on a shut-off domain');
        expect(r.stderr).toContain('virsh shutdown busy');
      }
      expect(await sha256File(a)).toBe(before);
      expect(execFileSync('ls', [out]).toString()).toBe('');
      expect((await parseDomainXml(await libvirtd!.virsh(['dumpxml', '--inactive', 'busy']))).disks[0]!.path).toBe(a);
    } finally {
      await libvirtd!.virsh(['destroy', 'busy']).catch(() => undefined);
    }
  }, 300_000);

  /** A qcow2 overlay over a private copy of the qcow2 fixture: the guest sees the fixture. */
  async function overlay(name: string): Promise<{ top: string; base: string }> {
    const base = await disk(qcow2, `${name}-base`);
    const top = join(dir, `${name}-top.qcow2`);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, top]);
    return { top, base };
  }

  it('a batch, --jobs 2: two domains and an image in place; a running domain and a disk with a backing file fail alone, exit 5, the report says which and why', async () => {
    const two = [await disk(raw, 'batch-two-a'), await disk(qcow2, 'batch-two-b')];
    await define('b-two', [fileDisk(two[0]!, 'raw', 'vda'), fileDisk(two[1]!, 'qcow2', 'vdb')]);
    const chain = await overlay('batch-chain');
    await define('b-chain', [fileDisk(chain.top, 'qcow2', 'vda')]);
    const busy = await disk(raw, 'batch-busy');
    await define('b-busy', [fileDisk(busy, 'raw', 'vda')]);
    const image = await disk(raw, 'batch-image');
    const untouched = { top: await sha256File(chain.top), base: await sha256File(chain.base), busy: await sha256File(busy) };
    const before = await Promise.all([...two, image].map(allocatedBytes));
    await libvirtd!.virsh(['start', 'b-busy']);
    const json = join(dir, 'batch.json');
    let r;
    try {
      r = await sparsify(['--in-place', '--jobs', '2', '-d', 'b-two', '-d', 'b-chain', '-d', 'b-busy', image, '--json', json]);
    } finally {
      await libvirtd!.virsh(['destroy', 'b-busy']).catch(() => undefined);
    }
    expect(r.exitCode, r.stderr).toBe(5);
    expect(r.stdout).toMatch(/^b-busy: FAILED: domain ‘b-busy’ is running/m);
    expect(r.stdout).toMatch(/^b-chain\/vda \(.*batch-chain-top.qcow2\): FAILED: .*backing/m);
    expect(r.stdout).toMatch(/^Total: 3 of 4 disks done, 1 failed/m);
    const after = await Promise.all([...two, image].map(allocatedBytes));
    const fsCount = [2, 1, 2];
    after.forEach((bytes, i) => expect(before[i]! - bytes, `disk ${i}`).toBeGreaterThanOrEqual(0.9 * fsCount[i]! * GARBAGE_MIB * MiB));
    expect((await verifyImage(two[0]!, 'raw', raw.manifestPath)).problems).toEqual([]);
    expect((await verifyImage(two[1]!, 'qcow2', qcow2.manifestPath)).problems).toEqual([]);
    expect((await verifyImage(image, 'raw', raw.manifestPath)).problems).toEqual([]);
    expect({ top: await sha256File(chain.top), base: await sha256File(chain.base), busy: await sha256File(busy) }).toEqual(untouched);
    const report = JSON.parse(await readFile(json, 'utf8'));
    expect(report.total).toMatchObject({ disks: 4, done: 3, failed: 1 });
    expect(report.domains.map((d: { name: string; status: string }) => [d.name, d.status])).toEqual([['b-busy', 'failed'], ['b-two', 'done'], ['b-chain', 'failed']]);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 900_000);

  it('copy mode flattens a disk with a backing file; --update-domain leaves the domain on one image with no chain', async () => {
    const chain = await overlay('copy-chain');
    await define('c-chain', [fileDisk(chain.top, 'qcow2', 'vda')]);
    const out = join(dir, 'flat');
    await mkdir(out);
    const r = await sparsify(['-d', 'c-chain', '--output-dir', out, '--update-domain']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`c-chain/vda (${chain.top}): done, `);
    expect(r.stdout).toContain(`, flattened (backing file ${chain.base})\n`);
    const flat = join(out, 'copy-chain-top.qcow2');
    expect(JSON.parse(execFileSync('qemu-img', ['info', '--output=json', flat]).toString())['backing-filename']).toBeUndefined();
    expect((await verifyImage(flat, 'qcow2', qcow2.manifestPath)).problems).toEqual([]);
    const now = await parseDomainXml(await libvirtd!.virsh(['dumpxml', '--inactive', 'c-chain']));
    expect(now.disks).toEqual([{ target: 'vda', kind: 'file', path: flat, format: 'qcow2', hasBacking: false }]);
  }, 600_000);

  it('--keep-backing: copy mode keeps the chain, the closing line says so; --update-domain points the domain at OUT over the old base, and libvirt validates it', async () => {
    const chain = await overlay('keep-chain');
    await define('k-chain', [fileDisk(chain.top, 'qcow2', 'vda')]);
    const before = { top: await sha256File(chain.top), base: await sha256File(chain.base) };
    const out = join(dir, 'kept');
    await mkdir(out);
    const r = await sparsify(['-d', 'k-chain', '--output-dir', out, '--update-domain', '--keep-backing']);
    expect(r.exitCode, r.stderr).toBe(0);
    const kept = join(out, 'keep-chain-top.qcow2');
    expect(r.stdout).toContain(`k-chain/vda (${chain.top}): done, `);
    expect(r.stdout).toMatch(new RegExp(`^k-chain/vda .*, kept the backing chain \\(${chain.base}\\)$`, 'm'));
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', kept]).toString());
    expect([info['backing-filename'], info['backing-filename-format']]).toEqual([chain.base, 'qcow2']);
    expect((await verifyImage(kept, 'qcow2', qcow2.manifestPath)).problems).toEqual([]);
    // The fixture's deleted files lie in the base: OUT holds zero clusters there, no data.
    expect(await allocatedBytes(kept)).toBeLessThan(4 * MiB);
    expect({ top: await sha256File(chain.top), base: await sha256File(chain.base) }).toEqual(before);
    const now = await parseDomainXml(await libvirtd!.virsh(['dumpxml', '--inactive', 'k-chain']));
    expect(now.disks.map((d) => [d.target, d.path, d.format])).toEqual([['vda', kept, 'qcow2']]);
    const again = join(dir, 'k-chain-again.xml');
    await writeFile(again, await libvirtd!.virsh(['dumpxml', '--inactive', 'k-chain']));
    await libvirtd!.virsh(['define', '--validate', again]);
  }, 600_000);

  it('a --json path that cannot be written is one line before any disk is read', async () => {
    const a = join(dir, 'inplace-a.raw');
    const before = await sha256File(a);
    const r = await sparsify(['--in-place', '-d', 'inplace', '--json', join(dir, 'missing', 'r.json')]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.split('\n')[0]).toMatch(/^sparsify: error: JSON report .*missing\/r.json: /);
    expect(r.stdout).not.toContain('left alone');
    expect(await sha256File(a)).toBe(before);
  }, 60_000);

  it('an unknown domain is one line naming it and the connection', async () => {
    const r = await sparsify(['--in-place', '-d', 'nosuch']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(`sparsify: error: no domain ‘nosuch’ on ${libvirtd!.uri}`);
  }, 60_000);

  // Last: it stops the daemon the tests above share.
  it('the private libvirtd stops with a domain still running and leaves nothing: no libvirtd, no qemu, its root gone', async () => {
    const a = await disk(qcow2, 'left-running');
    await define('left', [fileDisk(a, 'qcow2', 'vda')]);
    await libvirtd!.virsh(['start', 'left']);
    const root = libvirtd!.root;
    const ours = () => execFileSync('ps', ['-eo', 'args']).toString().split('\n').filter((line) => line.includes(root) || line.includes(a));
    expect(ours().some((line) => line.startsWith('/usr/bin/qemu-system'))).toBe(true);
    await libvirtd!.stop();
    expect(ours()).toEqual([]);
    expect(existsSync(root)).toBe(false);
  }, 120_000);
});
