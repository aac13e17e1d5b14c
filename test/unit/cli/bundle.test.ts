/**
 * The shipped command is a bundle (scripts/bundle-cli.mjs, issue 9): builds it into a temporary
 * directory with the same layout as dist/cli and checks what start-up reads, that the lazy
 * imports stayed lazy, and that the compress worker is found where the pool looks for it and finds
 * the deflate addon (build/Release, as npm install leaves it beside dist/).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../helpers/image.js';
import { systemDeflate } from '../../../src/qcow2/compress-zlib.js';
import { VERSION } from '../../../src/version.js';
import { bundleCli } from '../../../scripts/bundle-cli.mjs';

const execFileAsync = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'sparsify-bundle-'));
const out = join(dir, 'dist', 'cli');
/** Output file (absolute) → the source files in it, from esbuild's metafile. */
let inputsOf = new Map<string, string[]>();

beforeAll(async () => {
  // As in the package: ES modules by package.json, the externals (koffi, argon2, zstd-napi) in node_modules.
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  symlinkSync(join(REPO_ROOT, 'build'), join(dir, 'build'));
  const meta = await bundleCli(out);
  inputsOf = new Map(Object.entries(meta.outputs).map(([file, o]) => [resolve(REPO_ROOT, file), Object.keys(o.inputs)]));
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The bundle's files that `sparsify ARGS` loads, and its exit code and output. */
async function loadedBy(args: readonly string[]): Promise<{ files: string[]; stdout: string; exitCode: number }> {
  const log = join(dir, `load-${args.join('_').replace(/\W/g, '')}.log`);
  const argv = ['--import', join(REPO_ROOT, 'test', 'helpers', 'load-log.mjs'), join(out, 'sparsify.cjs'), ...args];
  const result = await execFileAsync(process.execPath, argv, { cwd: dir, env: { ...process.env, LOAD_LOG: log } }).then(
    (r) => ({ stdout: r.stdout, exitCode: 0 }),
    (e: { stdout: string; code: number }) => ({ stdout: e.stdout, exitCode: e.code }),
  );
  const urls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  const files = urls.filter((u) => u.startsWith(pathToFileURL(out).href)).map((u) => new URL(u).pathname);
  return { ...result, files };
}

/** The sources in `files` that match `pattern`. */
function sourcesIn(files: readonly string[], pattern: RegExp): string[] {
  return files.flatMap((f) => inputsOf.get(f) ?? []).filter((s) => pattern.test(s));
}

const DISK_WORK = /^src\/(engines\/(?!ids\.ts)|qemu\/|nbd\/|copy\/|modes\/)|node_modules\/(listr2|execa)\//;
const OCCASIONAL = /^src\/(libvirt|batch)\/|node_modules\/(xml2js|tar|picomatch)\//;

describe('the bundled command', () => {
  it('--version reads at most 5 files of the bundle and none with disk-work code', async () => {
    const { files, stdout, exitCode } = await loadedBy(['--version']);
    expect(exitCode).toBe(0);
    expect(stdout).toContain(VERSION);
    expect(files).toContain(join(out, 'main.js'));
    expect(files.length).toBeLessThanOrEqual(5);
    expect(sourcesIn(files, DISK_WORK)).toEqual([]);
  });

  it('a copy loads the engines in chunks of their own, but no batch, libvirt, XML, tar or glob code', async () => {
    const { files, exitCode } = await loadedBy([join(dir, 'missing.img'), join(dir, 'out.img')]);
    expect(exitCode).toBe(1);
    expect(sourcesIn(files, /^src\/engines\/registry\.ts$/)).toHaveLength(1);
    expect(sourcesIn(files, OCCASIONAL)).toEqual([]);
  }, 60_000);

  it('the compress worker lies beside the chunk that starts it, and compresses there with the addon', async () => {
    const pool = [...inputsOf].find(([, inputs]) => inputs.includes('src/qcow2/compress-pool.ts'))?.[0];
    const workerFile = join(out, 'compress-worker.js');
    expect(pool && dirname(pool)).toBe(out);
    expect(inputsOf.get(workerFile)).toContain('src/qcow2/compress-worker.js');
    const clusterBytes = 65536;
    const slot = { input: new SharedArrayBuffer(clusterBytes), output: new SharedArrayBuffer(2 * clusterBytes) };
    // A cluster of a program: the system's libz (the addon) and Node's zlib deflate it differently.
    const cluster = Buffer.alloc(clusterBytes);
    const fh = await open(process.execPath, 'r');
    await fh.read(cluster, 0, clusterBytes, 16 * 1024 * 1024).finally(() => fh.close());
    new Uint8Array(slot.input).set(cluster);
    const expected = Buffer.alloc(2 * clusterBytes);
    const expectedBytes = systemDeflate(clusterBytes)!(cluster, expected);
    expect(expectedBytes).toBeLessThan(clusterBytes);
    const worker = new Worker(workerFile, { workerData: { clusterBytes, slots: [slot], compressionType: 'zlib' } });
    try {
      const answer = await new Promise<{ lengths: Int32Array; error?: string }>((res, rej) => {
        worker.once('message', res);
        worker.once('error', rej);
        worker.postMessage({ slot: 0, lengthBytes: clusterBytes });
      });
      expect(answer.error).toBeUndefined();
      expect(answer.lengths[0]).toBe(expectedBytes);
      expect(Buffer.from(slot.output, 0, expectedBytes).equals(expected.subarray(0, expectedBytes))).toBe(true);
    } finally {
      await worker.terminate();
    }
  });
});
