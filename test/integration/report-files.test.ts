/**
 * --json and --machine-readable=file:/fd: are opened and checked before any work, may not be
 * the input or the output, and fail with one line and nothing left; the JSON report is written
 * before the output is renamed into place, so a report that cannot be written leaves no output.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { CLI, leftoversUnder, makeRunTmp, runCli, type CliResult } from '../helpers/cli.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

describeIntegration('report files: checked first, never the input or the output', { tools: ['qemu-img', 'qemu-storage-daemon'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let work: string;
  let input: string;
  let inputSha: string;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4'], size: '256M', fillMiB: 8, garbageMiB: 16, seed: 5 });
    dir = await makeRunTmp();
    work = join(dir, 'work');
    await mkdir(work);
    input = join(dir, 'in.raw');
    await copyImage(image.imagePath, input);
    inputSha = await sha256File(input);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** One error line, exit 1, no stack trace, the input unchanged, no output and nothing else left. */
  async function refused(r: CliResult, message: RegExp, out: string): Promise<void> {
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:')), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/Unhandled|\n\s+at /);
    expect(await sha256File(input)).toBe(inputSha);
    await expect(stat(out)).rejects.toThrow();
    expect((await readdir(dir)).filter((n) => n.includes('.partial'))).toEqual([]);
    expect(await leftoversUnder(work)).toEqual([]);
  }

  const run = (args: string[], out: string) => runCli(['--tmp', work, '-f', 'raw', ...args, input, out]);

  it('--json in a missing directory fails before any work, and no output is left', async () => {
    const out = join(dir, 'json-missing.raw');
    const r = await run(['--json', join(dir, 'no', 'such', 'r.json')], out);
    await refused(r, /JSON report .*no\/such\/r\.json: the directory .* does not exist/, out);
    expect(r.stdout).not.toMatch(/Copy to destination/);
  });

  it('--json naming the input, the output, or a link to the input is refused; the input is not overwritten', async () => {
    const out = join(dir, 'json-same.raw');
    await refused(await run(['--json', input], out), /--json .* is the input image/, out);
    await refused(await run(['--json', out], out), /--json .* is the output image/, out);
    const link = join(dir, 'link-to-input');
    await symlink(input, link);
    await refused(await run(['--json', link], out), /--json .* is the input image/, out);
    await rm(link);
  });

  it('--machine-readable=file:IN is refused before anything is written (the input is not truncated)', async () => {
    const out = join(dir, 'mr-same.raw');
    await refused(await run([`--machine-readable=file:${input}`], out), /--machine-readable=file: .* is the input image/, out);
  });

  it('--machine-readable=file: in a missing directory, or fd: not open, is one line (no crash)', async () => {
    const out = join(dir, 'mr-bad.raw');
    await refused(await run([`--machine-readable=file:${join(dir, 'no', 'x')}`], out), /machine-readable output .*no\/x: the directory/, out);
    await refused(await run(['--machine-readable=fd:99'], out), /machine-readable output fd:99: not a file descriptor open for writing/, out);
  });

  it('--machine-readable=fd:N writes status and progress to an open descriptor', async () => {
    const out = join(dir, 'mr-fd.raw');
    const child = spawn(process.execPath, [CLI, '--tmp', work, '-f', 'raw', '--machine-readable=fd:3', input, out], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let lines = '';
    let stderr = '';
    child.stdio[3]!.on('data', (d) => (lines += String(d)));
    child.stderr!.on('data', (d) => (stderr += String(d)));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(0);
    expect(lines).toMatch(/^Copy to destination and make sparse$/m);
    expect(lines).toMatch(/^(\d+)\/\1$/m); // the copy's bytes read of bytes to read, at 100%
    await rm(out);
  });

  it('a machine-readable reader that goes away mid-run fails the run before the output is put in place', async () => {
    const out = join(dir, 'mr-gone.raw');
    const child = spawn(process.execPath, [CLI, '--tmp', work, '-f', 'raw', '--machine-readable=fd:3', input, out], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += String(d)));
    child.stdio[3]!.once('data', () => child.stdio[3]!.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    await refused({ exitCode: code ?? -1, stdout: '', stderr }, /machine-readable output fd:3: the reader went away \(broken pipe\)/, out);
  });

  it('a batch whose machine-readable reader goes away starts no further disk and fails in one line', async () => {
    const batch = join(dir, 'batch');
    const outDir = join(batch, 'out');
    await mkdir(outDir, { recursive: true });
    const inputs = ['b1.raw', 'b2.raw', 'b3.raw'].map((n) => join(batch, n));
    for (const p of inputs) await copyImage(input, p);
    const child = spawn(process.execPath, [CLI, '--tmp', work, '-f', 'raw', '--jobs', '1', '--machine-readable=fd:3', '--output-dir', outDir, ...inputs], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += String(d)));
    // The reader leaves at the first lines it gets; the next write fails (EPIPE), at the latest
    // while the first disk runs.
    child.stdio[3]!.once('data', () => child.stdio[3]!.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(1);
    expect(stderr.split('\n').filter((l) => l.startsWith('sparsify: error:')), stderr).toEqual([
      expect.stringMatching(/machine-readable output fd:3: the reader went away \(broken pipe\)/),
    ]);
    // Before, every disk was copied anyway and the failure was told only at the end.
    expect((await readdir(outDir)).length).toBeLessThanOrEqual(1);
    expect(await leftoversUnder(work)).toEqual([]);
    await rm(batch, { recursive: true, force: true });
  });

  it('a JSON report that cannot be written (full filesystem) fails the run before the output is put in place', async () => {
    const full = join(dir, 'full');
    await mkdir(full);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full]);
    try {
      execFileSync('sh', ['-c', `dd if=/dev/zero of=${join(full, 'filler')} bs=4k 2>/dev/null || true`]);
      const out = join(dir, 'json-full.raw');
      const json = join(full, 'r.json');
      await refused(await run(['--json', json], out), /JSON report .*r\.json: no space left/, out);
      await expect(stat(json)).rejects.toThrow();
    } finally {
      execFileSync('umount', [full]);
    }
  });

  it('--json over an existing file is replaced only after a successful run, and holds the whole report', async () => {
    const json = join(dir, 'report.json');
    await writeFile(json, 'x'.repeat(100_000));
    const failed = await run(['--json', json], input);
    expect(failed.exitCode).toBe(1);
    expect(await readFile(json, 'utf8')).toBe('x'.repeat(100_000));
    const out = join(dir, 'json-ok.raw');
    const r = await run(['--json', json, '-q'], out);
    expect(r.exitCode, r.stderr).toBe(0);
    const report = await readReport(json);
    expect(report.output?.path).toBe(out);
    await rm(out);
  });
});
