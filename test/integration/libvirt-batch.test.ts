/**
 * Batches of domains against a real libvirtd (test/helpers/libvirt.ts): issue 13's three
 * shut-off domains over dirty images (deleted data: one domain with two disks, one with a qcow2
 * over a backing file), each alone and all three as one batch; and a batch killed with SIGKILL
 * half-way and resumed with --resume. Small images (256 MiB) keep it short.
 */
import { execFileSync, spawn } from 'node:child_process';
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
const TOOLS = ['virsh', 'libvirtd', 'unshare', 'qemu-img', 'qemu-storage-daemon', 'qemu-system-x86_64'];

describeIntegration('libvirt batches (--resume)', { tools: TOOLS, root: true }, () => {
  let libvirtd: Libvirtd | undefined;
  let small: BuiltImage;
  let smallQcow2: BuiltImage;
  let dir: string;
  let tmp: string;
  let state: string;

  beforeAll(async () => {
    small = await buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 64, garbageMiB: GARBAGE_MIB, seed: 31 });
    smallQcow2 = await buildImage({ layout: 'mbr', fs: ['ext4'], size: '256M', fillMiB: 16, garbageMiB: GARBAGE_MIB, format: 'qcow2', seed: 32 });
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

  /** A private copy of a fixture. */
  async function copyOf(image: BuiltImage, name: string): Promise<string> {
    const path = join(dir, `${name}.${image.format}`);
    await copyImage(image.imagePath, path);
    return path;
  }

  /**
   * Issue 13's three domains, named PREFIX-pair (a raw and a qcow2 disk), PREFIX-one (a raw
   * disk) and PREFIX-chain (a qcow2 over a qcow2 backing file holding the fixture).
   */
  async function threeDomains(prefix: string) {
    const pair = [await copyOf(small, `${prefix}-pair-a`), await copyOf(smallQcow2, `${prefix}-pair-b`)];
    const one = await copyOf(small, `${prefix}-one`);
    const base = await copyOf(smallQcow2, `${prefix}-chain-base`);
    const top = join(dir, `${prefix}-chain-top.qcow2`);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, top]);
    const define = async (name: string, disks: string[]) => {
      await writeFile(join(dir, `${name}.xml`), domainXml(name, disks));
      await libvirtd!.virsh(['define', '--validate', join(dir, `${name}.xml`)]);
    };
    await define(`${prefix}-pair`, [fileDisk(pair[0]!, 'raw', 'vda'), fileDisk(pair[1]!, 'qcow2', 'vdb')]);
    await define(`${prefix}-one`, [fileDisk(one, 'raw', 'vda')]);
    await define(`${prefix}-chain`, [fileDisk(top, 'qcow2', 'vda')]);
    // The disks that give space back in place, each with its fixture; the chain's two files.
    const reclaimable = [
      { path: pair[0]!, image: small },
      { path: pair[1]!, image: smallQcow2 },
      { path: one, image: small },
    ];
    return { reclaimable, chain: { top, base }, names: [`${prefix}-pair`, `${prefix}-one`, `${prefix}-chain`] };
  }

  const sparsify = (args: string[]) => runCli(['-c', libvirtd!.uri, ...args], env());

  async function expectReclaimedAndIdentical(disks: readonly { path: string; image: BuiltImage }[], before: readonly number[]): Promise<void> {
    for (const [i, d] of disks.entries()) {
      expect(before[i]! - (await allocatedBytes(d.path)), d.path).toBeGreaterThanOrEqual(0.9 * GARBAGE_MIB * MiB);
      expect((await verifyImage(d.path, d.image.format, d.image.manifestPath)).problems, d.path).toEqual([]);
    }
  }

  /**
   * A batch's --machine-readable output (src/batch/batch-machine-lines.ts): the task list; each
   * disk's copy progress, as a single run prints it, under its task number up to DONE/DONE; its
   * result, what it reclaimed as --json's `report` says; the batch's own N/D progress, never going
   * back, to the end; the state and total summing what each disk reclaimed; no plain lines.
   */
  function expectMachineLines(stdout: string, labels: readonly string[], json: { disks: { report: { input: { allocatedBytes: number }; output: { allocatedBytes: number } } }[] }): void {
    const lines = stdout.split('\n');
    expect(lines).toContain(`sparsify-batch disks=${labels.length}`);
    expect(lines.filter((l) => l.startsWith('sparsify-disk ')).map((l) => l.split(' ')[2])).toEqual(labels);
    const reclaimed: number[] = [];
    for (const n of labels.keys()) {
      const task = lines.filter((l) => l.startsWith(`sparsify-task ${n + 1} `)).map((l) => l.slice(`sparsify-task ${n + 1} `.length));
      expect(task.filter((l) => /^\d+\/\d+$/.test(l)).at(-1), labels[n]).toMatch(/^(\d+)\/\1$/);
      expect(task.filter((l) => l.startsWith('sparsify-progress ')).at(-1), labels[n]).toMatch(/^sparsify-progress done=(\d+) total=\1\b/);
      expect(task.at(-1), labels[n]).toBe('Sparsify operation completed with no errors.');
      const done = lines.filter((l) => l.startsWith(`sparsify-disk-done ${n + 1} `));
      expect(done, labels[n]).toHaveLength(1);
      reclaimed.push(Number(/reclaimed=(\d+)$/.exec(done[0]!)![1]));
    }
    expect(reclaimed).toEqual(json.disks.map(({ report: r }) => Math.max(0, r.input.allocatedBytes - r.output.allocatedBytes)));
    const batch = lines.filter((l) => /^\d+\/\d+$/.test(l)).map((l) => l.split('/').map(Number) as [number, number]);
    expect(batch.length).toBeGreaterThan(1);
    batch.forEach(([done, total], k) => {
      expect(total).toBe(batch[0]![1]);
      if (k > 0) expect(done).toBeGreaterThanOrEqual(batch[k - 1]![0]);
    });
    expect(batch.at(-1)![0]).toBe(batch[0]![1]);
    const sum = reclaimed.reduce((a, b) => a + b, 0);
    expect(lines).toContain(`sparsify-batch finished=${labels.length} disks=${labels.length} failed=0 reclaimed=${sum}`);
    expect(lines.at(-2)).toBe(`sparsify-batch-total disks=${labels.length} done=${labels.length} failed=0 reclaimed=${sum}`);
    expect(stdout).not.toMatch(/^(Total|Batch): /m);
  }

  it('issue 13’s three domains, --in-place -d on each: both disks of one and the disk of another give their free space back, files identical; the qcow2 over a backing file is refused as a single image is, unchanged', async () => {
    const t = await threeDomains('each');
    const before = await Promise.all(t.reclaimable.map((d) => allocatedBytes(d.path)));
    const chainBefore = { top: await sha256File(t.chain.top), base: await sha256File(t.chain.base) };
    for (const name of t.names.slice(0, 2)) {
      const r = await sparsify(['--in-place', '-d', name]);
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    }
    const refused = await sparsify(['--in-place', '-d', 'each-chain']);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr.split('\n')).toContain(`sparsify: error: ${t.chain.top} has a backing file: refused in place, where only its own clusters could be freed`);
    await expectReclaimedAndIdentical(t.reclaimable, before);
    expect({ top: await sha256File(t.chain.top), base: await sha256File(t.chain.base) }).toEqual(chainBefore);
    expect(await journals()).toEqual([]);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 300_000);

  it('issue 13’s three domains as one in-place batch, --jobs 2: the same, the backing-file disk failing alone with its reason, exit 5; then one copy batch of all three, --jobs 2, --machine-readable, flattens it, and --update-domain leaves domains libvirt validates', async () => {
    const t = await threeDomains('all');
    const before = await Promise.all(t.reclaimable.map((d) => allocatedBytes(d.path)));
    const chainBefore = { top: await sha256File(t.chain.top), base: await sha256File(t.chain.base) };
    const json = join(dir, 'all.json');
    const r = await sparsify(['--in-place', '--jobs', '2', ...t.names.flatMap((n) => ['-d', n]), '--json', json]);
    expect(r.exitCode, r.stdout + r.stderr).toBe(5);
    expect(r.stdout).toMatch(/^all-chain\/vda \(.*all-chain-top.qcow2\): FAILED: .* has a backing file: refused in place, where only its own clusters could be freed$/m);
    expect(r.stdout).toMatch(/^Total: 3 of 4 disks done, 1 failed/m);
    await expectReclaimedAndIdentical(t.reclaimable, before);
    expect({ top: await sha256File(t.chain.top), base: await sha256File(t.chain.base) }).toEqual(chainBefore);
    const report = JSON.parse(await readFile(json, 'utf8'));
    expect(report.domains.map((d: { name: string; status: string }) => [d.name, d.status])).toEqual([['all-pair', 'done'], ['all-one', 'done'], ['all-chain', 'failed']]);
    // A batch with a failed disk keeps its journal, for --resume, and says where it is.
    expect(await journals()).toHaveLength(1);
    expect(r.stdout).toContain(`The journal of this batch is ${join(state, 'sparsify', 'batches', (await journals())[0]!)}`);
    await rm(join(state, 'sparsify'), { recursive: true });

    const out = join(dir, 'all-out');
    await mkdir(out);
    const copyJson = join(dir, 'all-copy.json');
    const c = await sparsify(['--jobs', '2', ...t.names.flatMap((n) => ['-d', n]), '--output-dir', out, '--update-domain', '--machine-readable', '--json', copyJson]);
    expect(c.exitCode, c.stdout + c.stderr).toBe(0);
    expectMachineLines(c.stdout, ['all-pair/vda', 'all-pair/vdb', 'all-one/vda', 'all-chain/vda'], JSON.parse(await readFile(copyJson, 'utf8')));
    const flat = join(out, 'all-chain-top.qcow2');
    expect(JSON.parse(execFileSync('qemu-img', ['info', '--output=json', flat]).toString())['backing-filename']).toBeUndefined();
    const outputs = [...t.reclaimable.map((d) => ({ path: join(out, d.path.slice(dir.length + 1)), image: d.image })), { path: flat, image: smallQcow2 }];
    for (const o of outputs) expect((await verifyImage(o.path, o.image.format, o.image.manifestPath)).problems, o.path).toEqual([]);
    expect(await allocatedBytes(flat)).toBeLessThan((await allocatedBytes(t.chain.base)) - 0.9 * GARBAGE_MIB * MiB);
    for (const name of t.names) {
      const xml = join(dir, `${name}-again.xml`);
      await writeFile(xml, await libvirtd!.virsh(['dumpxml', '--inactive', name]));
      await libvirtd!.virsh(['define', '--validate', xml]);
      const def = await parseDomainXml(await readFile(xml, 'utf8'));
      expect(def.disks.every((d) => d.path.startsWith(`${out}/`) && !d.hasBacking), name).toBe(true);
    }
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 600_000);

  it('--all-domains --filter GLOB: only the domains whose name matches; a running one is skipped with its state, not failed (exit 0); the others are untouched', async () => {
    const [a] = await domain('f-a', ['vda']);
    const [busy] = await domain('f-busy', ['vda']);
    const [other] = await domain('g-other', ['vda']);
    const before = await allocatedBytes(a!);
    const untouched = { busy: await sha256File(busy!), other: await sha256File(other!) };
    await libvirtd!.virsh(['start', 'f-busy']);
    const json = join(dir, 'filter.json');
    let r;
    try {
      r = await sparsify(['--in-place', '--all-domains', '--filter', 'f-*', '--jobs', '2', '--json', json]);
    } finally {
      await libvirtd!.virsh(['destroy', 'f-busy']).catch(() => undefined);
    }
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^f-busy: skipped: domain ‘f-busy’ is running: sparsify only works on a shut-off domain$/m);
    expect(r.stdout).toMatch(/^Total: 1 of 1 disks done, /m);
    expect(before - (await allocatedBytes(a!))).toBeGreaterThanOrEqual(0.9 * GARBAGE_MIB * MiB);
    expect((await verifyImage(a!, 'raw', small.manifestPath)).problems).toEqual([]);
    expect({ busy: await sha256File(busy!), other: await sha256File(other!) }).toEqual(untouched);
    const report = JSON.parse(await readFile(json, 'utf8'));
    expect(report.domains.map((d: { name: string; status: string }) => [d.name, d.status])).toEqual([['f-busy', 'skipped'], ['f-a', 'done']]);
    const none = await sparsify(['--in-place', '--all-domains', '--filter', 'nomatch-*']);
    expect(none.exitCode).toBe(1);
    expect(none.stderr.split('\n')[0]).toBe(`sparsify: error: no domain on ${libvirtd!.uri} matches --filter ‘nomatch-*’`);
    expect(await journals()).toEqual([]);
    expect(await leftoversUnder(tmp)).toEqual([]);
  }, 300_000);

  it('a batch’s --json that is one of its domains’ disks (input, or output in --output-dir) is one line before any disk is run; the disk is unchanged', async () => {
    const [a, b] = await domain('j-guard', ['vda', 'vdb']);
    const sums = [await sha256File(a!), await sha256File(b!)];
    const r = await sparsify(['--in-place', '-d', 'j-guard', '--json', b!]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(`sparsify: error: --json ${b} is the input image ${b}; it would be overwritten`);
    const out = join(dir, 'j-out');
    await mkdir(out);
    const outputOfA = join(out, 'j-guard-vda.raw');
    await writeFile(outputOfA, 'not an image');
    const c = await sparsify(['-d', 'j-guard', '--output-dir', out, '--json', outputOfA]);
    expect(c.exitCode).toBe(1);
    expect(c.stderr.split('\n')[0]).toBe(`sparsify: error: --json ${outputOfA} is the output image ${outputOfA}; it would be overwritten`);
    expect(await readdir(out)).toEqual(['j-guard-vda.raw']);
    expect([await sha256File(a!), await sha256File(b!)]).toEqual(sums);
  }, 120_000);

  /**
   * Starts the CLI (`detached`: in a process group of its own) and resolves once its plain
   * lines say `finished` disks of 4 are done and the next copy has begun (or once it ended).
   */
  async function startUntilCopying(args: readonly string[], finished: number, detached: boolean) {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'], detached });
    const exited = waitForExit(child);
    let seen = '';
    await new Promise<void>((resolve) => {
      child.stdout!.on('data', (d) => {
        seen += String(d);
        const at = seen.search(new RegExp(`^Batch: ${finished} of 4 disks finished`, 'm'));
        if (at >= 0 && /^› 0 B of /m.test(seen.slice(at))) resolve();
      });
      child.on('close', () => resolve());
    });
    return { child, exited, seen };
  }

  it('a copy batch killed with SIGKILL half-way (process group) resumes with --resume: done disks are not redone, no half-written output is kept, domains end on the new disks; Ctrl-C (SIGINT) of the resumed run cleans up and says in one line how to go on', async () => {
    const inputs = [...(await domain('k-one', ['vda', 'vdb'])), ...(await domain('k-two', ['vda', 'vdb']))];
    const sums = await Promise.all(inputs.map(sha256File));
    const out = join(dir, 'out');
    await mkdir(out);
    const args = ['-c', libvirtd!.uri, '--jobs', '1', '-d', 'k-one', '-d', 'k-two', '--output-dir', out, '--update-domain'];

    // Killed, with every process it started, once its progress says one disk is finished and the
    // next one's copy has begun (its output is open under its temporary name).
    const { child, exited, seen } = await startUntilCopying(args, 1, true);
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

    // The resumed run, interrupted as Ctrl-C would (SIGINT) once one more disk is done and the
    // next one's copy has begun: exit 1, virt-sparsify's line, the hint naming the journal and
    // --resume, no partial output, nothing left in TMPDIR, the journal kept.
    const resumed = await startUntilCopying([...args, '--resume'], 2, false);
    resumed.child.kill('SIGINT');
    const i = await resumed.exited;
    expect(i.exitCode, i.stdout + i.stderr).toBe(1);
    const done = (await readdir(out)).filter((n) => !n.startsWith('.'));
    expect(done.length, i.stdout).toBeGreaterThanOrEqual(2);
    expect(done.length, i.stdout).toBeLessThan(4);
    const journalPath = join(state, 'sparsify', 'batches', journalName!);
    // Before them: the first run's debris removed (named), and the plain lines of the two disks stopped.
    expect(i.stderr.split('\n').slice(-3)).toEqual([
      'sparsify: error: quit (^C) at user request',
      `sparsify: hint: ${done.length} finished disks are recorded in ${journalPath}: the same command with --resume goes on from there`,
      '',
    ]);
    expect((await readdir(out)).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(Object.keys(JSON.parse(await readFile(journalPath, 'utf8')).done)).toHaveLength(done.length);
    expect(await leftoversUnder(tmp)).toEqual([]);

    const r = await runCli([...args, '--resume'], env());
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout.match(/done by an earlier run of this batch, not run again/g)?.length).toBe(done.length);
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
