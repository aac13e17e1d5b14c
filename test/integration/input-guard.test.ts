import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, runCli, spawnCli, waitForExit } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);

/** Waits until `probe` returns something, polling every few milliseconds. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 3));
  }
}

/** The first qemu-storage-daemon socket in a work directory under `tmp`: the input's. */
async function inputSocket(tmp: string): Promise<string | undefined> {
  for (const dir of await readdir(tmp).catch(() => [] as string[])) {
    if (!dir.startsWith('sparsify-')) continue;
    const sock = (await readdir(join(tmp, dir)).catch(() => [] as string[])).find((n) => n.endsWith('.sock'));
    if (sock) return join(tmp, dir, sock);
  }
  return undefined;
}

/** A mount of the mount engine under `tmp` (the overlay's filesystems), if one exists now. */
async function engineMount(tmp: string): Promise<string | undefined> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  return mounts.split('\n').find((l) => l.includes(`${tmp}/sparsify-`) && l.includes('/mnt-'));
}

/** qemu-io opening `path` for writing, as a VM or another tool would. */
async function qemuWrite(path: string, format: string): Promise<{ code: number; stderr: string }> {
  try {
    await execFileAsync('qemu-io', ['-f', format, '-c', 'write 0 512', path]);
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: e.stderr ?? '' };
  }
}

describeIntegration('the input is guarded for the whole copy', { tools: ['qemu-img', 'qemu-io', 'qemu-storage-daemon', 'setpriv'] }, () => {
  let whole: BuiltImage;
  let tmp: string;

  beforeAll(async () => {
    // No partition table: shrinking the file cuts no backup GPT that the layout reader needs.
    whole = await buildImage({ layout: 'whole', fs: ['ext4'], size: '256M', fillMiB: 4, garbageMiB: 32 });
    tmp = await makeRunTmp();
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  /** A directory of its own for one case: TMPDIR of its runs, and where its input and output live. */
  async function caseDir(format = 'raw') {
    const dir = await mkdtemp(join(tmp, 'case-'));
    const input = join(dir, `in.${format}`);
    if (format === 'raw') await copyFile(whole.imagePath, input);
    else await execFileAsync('qemu-img', ['convert', '-f', 'raw', '-O', format, whole.imagePath, input]);
    return { dir, input, output: join(dir, `out.${format}`) };
  }

  /** Starts sparsify (IN OUT, or --in-place IN) and stops it (SIGSTOP) once `stopWhen` sees what the test needs. */
  async function stoppedCopy(c: { dir: string; input: string; output: string }, extra: string[], stopWhen = inputSocket) {
    const child = spawnCli([...extra, c.input, ...(extra.includes('--in-place') ? [] : [c.output])], { TMPDIR: c.dir });
    const exited = waitForExit(child);
    await waitFor('the run to get there', () => stopWhen(c.dir));
    child.kill('SIGSTOP');
    return { exited, resume: () => child.kill('SIGCONT') };
  }

  function expectInUse(r: { exitCode: number; stderr: string }): void {
    expect(r.exitCode, r.stderr).toBe(1);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'));
    expect(errors).toEqual([expect.stringMatching(/^sparsify: error: \S+ is in use by another process \(a running VM\?\); shut it down first$/)]);
  }

  /** Nothing but the input is left in the case's directory: no output, partial, work dir, mount, loop device or daemon. */
  async function expectOnlyInput(c: { dir: string; input: string }): Promise<void> {
    expect(await leftoversUnder(c.dir)).toEqual([`file: ${c.input}`]);
  }

  it.each([
    ['truncated', (input: string) => execFileAsync('truncate', ['-s', '-1M', input]), /size 268435456 → 267386880 bytes/],
    ['rewritten in place', (input: string) => execFileAsync('dd', ['if=/dev/urandom', `of=${input}`, 'bs=64K', 'count=4', 'seek=1000', 'conv=notrunc', 'status=none']), /it was written to/],
  ])('an input %s during the copy fails the run: exit 1, one line, no output', async (_, change, why) => {
    const c = await caseDir();
    const run = await stoppedCopy(c, ['-f', 'raw']);
    await change(c.input);
    run.resume();
    const r = await run.exited;
    expect(r.exitCode, r.stderr).toBe(1);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^sparsify: error: \S+ changed during the run \(.*\); the output was not kept$/);
    expect(errors[0]).toMatch(why);
    await expectOnlyInput(c);
  });

  it.each(['raw', 'qcow2'])('a %s input cannot be opened for writing by qemu while it is copied', async (format) => {
    const c = await caseDir(format);
    const before = await sha256File(c.input);
    const run = await stoppedCopy(c, ['-f', format]);
    const w = await qemuWrite(c.input, format);
    run.resume();
    expect(w.code).not.toBe(0);
    expect(w.stderr).toMatch(/Failed to get "write" lock/);
    const r = await run.exited;
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await sha256File(c.input)).toBe(before);
  });

  it('a second sparsify that would write an image being copied is refused with IN_USE; a second copy may read it', async () => {
    const c = await caseDir();
    const before = await sha256File(c.input);
    const run = await stoppedCopy(c, ['-f', 'raw']);
    const inPlace = await runCli(['-f', 'raw', '--in-place', c.input], { TMPDIR: c.dir });
    const second = join(c.dir, 'second.raw');
    const copy = await runCli(['-q', '-f', 'raw', c.input, second], { TMPDIR: c.dir });
    run.resume();
    expectInUse(inPlace);
    expect(copy.exitCode, copy.stderr).toBe(0);
    const first = await run.exited;
    expect(first.exitCode, first.stderr).toBe(0);
    expect(await sha256File(c.input)).toBe(before);
    expect(await sha256File(second)).toBe(await sha256File(c.output));
    await rm(second);
    await rm(c.output);
    await expectOnlyInput(c);
  });

  it('an image being trimmed in place is refused to a copy and to a second in-place run (IN_USE)', async () => {
    const c = await caseDir();
    const run = await stoppedCopy(c, ['-f', 'raw', '--in-place']);
    const copy = await runCli(['-f', 'raw', c.input, c.output], { TMPDIR: c.dir });
    const inPlace = await runCli(['-f', 'raw', '--in-place', c.input], { TMPDIR: c.dir });
    run.resume();
    expectInUse(copy);
    expectInUse(inPlace);
    const first = await run.exited;
    expect(first.exitCode, first.stderr).toBe(0);
    await expectOnlyInput(c);
  });

  it.skipIf(process.getuid?.() !== 0)('the guard holds while the mount engine trims the overlay (backing = the input)', async () => {
    const c = await caseDir();
    const run = await stoppedCopy(c, ['-f', 'raw', '--engine', 'mount'], engineMount);
    const w = await qemuWrite(c.input, 'raw');
    run.resume();
    expect(w.code).not.toBe(0);
    expect(w.stderr).toMatch(/Failed to get "write" lock/);
    const r = await run.exited;
    expect(r.exitCode, r.stderr).toBe(0);
  });
});
