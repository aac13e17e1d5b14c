/**
 * Batches of domains against a real libvirtd (test/helpers/libvirt.ts): a batch killed with
 * SIGKILL half-way and resumed with --resume. Small images (256 MiB) keep it short.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/libvirt/domain-xml.js';
import { CLI, leftoversUnder, makeRunTmp, runCli, waitForExit } from '../helpers/cli.js';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { domainXml, fileDisk, startLibvirtd, type Libvirtd } from '../helpers/libvirt.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File, verifyImage } from '../helpers/verify.js';

const MiB = 1024 * 1024;
const GARBAGE_MIB = 32;
const TOOLS = ['virsh', 'libvirtd', 'unshare', 'qemu-img', 'qemu-storage-daemon'];

describeIntegration('libvirt batches (--resume)', { tools: TOOLS, root: true }, () => {
  let libvirtd: Libvirtd | undefined;
  let small: BuiltImage;
  let dir: string;
  let tmp: string;
  let state: string;

  beforeAll(async () => {
    small = await buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 64, garbageMiB: GARBAGE_MIB, seed: 31 });
    dir = await makeRunTmp();
    tmp = join(dir, 'tmp');
    state = join(dir, 'state');
    await mkdir(tmp);
    libvirtd = await startLibvirtd();
  }, 600_000);

  afterAll(async () => {
    await libvirtd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  /** The batch journals (XDG_STATE_HOME points into the test's directory). */
  const journals = () => readdir(join(state, 'sparsify', 'batches')).catch(() => [] as string[]);
  const env = () => ({ TMPDIR: tmp, XDG_STATE_HOME: state });

  async function domain(name: string, targets: readonly string[]): Promise<string[]> {
    const paths: string[] = [];
    for (const t of targets) {
      const path = join(dir, `${name}-${t}.raw`);
      await copyImage(small.imagePath, path);
      paths.push(path);
    }
    const xmlPath = join(dir, `${name}.xml`);
    await writeFile(xmlPath, domainXml(name, paths.map((p, i) => fileDisk(p, 'raw', targets[i]!))));
    await libvirtd!.virsh(['define', '--validate', xmlPath]);
    return paths;
  }

  it('a copy batch killed with SIGKILL half-way (process group) resumes with --resume: done disks are not redone, no half-written output is kept, domains end on the new disks', async () => {
    const inputs = [...(await domain('k-one', ['vda', 'vdb'])), ...(await domain('k-two', ['vda', 'vdb']))];
    const sums = await Promise.all(inputs.map(sha256File));
    const out = join(dir, 'out');
    await mkdir(out);
    const args = ['-c', libvirtd!.uri, '--jobs', '1', '-d', 'k-one', '-d', 'k-two', '--output-dir', out, '--update-domain'];

    // Killed, with every process it started, once its progress says one disk is finished and the
    // next one's copy has begun (its output is open under its temporary name).
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const exited = waitForExit(child);
    let seen = '';
    await new Promise<void>((resolve) => {
      child.stdout!.on('data', (d) => {
        seen += String(d);
        const finished = seen.search(/^Batch: 1 of 4 disks finished/m);
        if (finished >= 0 && /^› 0 B of /m.test(seen.slice(finished))) resolve();
      });
      child.on('close', () => resolve());
    });
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    const killed = await exited;
    expect(killed.exitCode, killed.stdout + killed.stderr).toBe(-1);
    expect(seen).toMatch(/^Batch: 1 of 4 disks finished, .* reclaimed so far, about \d+:\d\d left$/m);

    // One output under its final name, complete and in the journal; the next one half-written
    // under its temporary name; the other two not begun.
    const left = await readdir(out);
    const finals = left.filter((n) => !n.startsWith('.'));
    expect(finals).toEqual(['k-one-vda.raw']);
    expect(left.filter((n) => n.startsWith('.k-one-vdb.raw.sparsify-') && n.endsWith('.partial'))).toHaveLength(1);
    for (const name of finals) expect((await verifyImage(join(out, name), 'raw', small.manifestPath)).problems, name).toEqual([]);
    const [journalName] = await journals();
    const journal = JSON.parse(await readFile(join(state, 'sparsify', 'batches', journalName!), 'utf8'));
    const doneOutputs = Object.values(journal.done as Record<string, { report: { output: { path: string } } }>).map((e) => e.report.output.path);
    for (const name of finals) expect(doneOutputs).toContain(join(out, name));
    // No domain was redefined: the batch did not finish.
    for (const name of ['k-one', 'k-two']) {
      const def = await parseDomainXml(await libvirtd!.virsh(['dumpxml', '--inactive', name]));
      expect(def.disks.every((d) => inputs.includes(d.path)), name).toBe(true);
    }

    const r = await runCli([...args, '--resume'], env());
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout.match(/done by an earlier run of this batch, not run again/g)?.length).toBe(finals.length);
    expect(r.stdout).toMatch(/^Total: 4 of 4 disks done/m);
    expect(await Promise.all(inputs.map(sha256File))).toEqual(sums);
    const names = inputs.map((p) => p.slice(dir.length + 1));
    // Nothing half-written, no partial, no journal: the four outputs and the two old definitions.
    expect((await readdir(out)).sort()).toEqual([...names, 'k-one.previous.xml', 'k-two.previous.xml'].sort());
    for (const name of names) {
      const path = join(out, name);
      expect((await verifyImage(path, 'raw', small.manifestPath)).problems, name).toEqual([]);
      expect(await allocatedBytes(path)).toBeLessThan((await allocatedBytes(join(dir, name))) - 0.9 * GARBAGE_MIB * MiB);
    }
    for (const name of ['k-one', 'k-two']) {
      const def = await parseDomainXml(await libvirtd!.virsh(['dumpxml', '--inactive', name]));
      expect(def.disks.map((d) => d.path)).toEqual(['vda', 'vdb'].map((t) => join(out, `${name}-${t}.raw`)));
    }
    expect(await journals()).toEqual([]);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 600_000);
});
