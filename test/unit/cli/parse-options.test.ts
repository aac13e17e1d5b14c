import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../../src/cli/parse-options.js';
import { SparsifyError } from '../../../src/errors.js';

function run(...argv: string[]) {
  const c = parseCommandLine(argv);
  if (c.kind !== 'run') throw new Error(`expected a run, got ${c.kind}`);
  return c;
}

function usageError(...argv: string[]): string {
  try {
    parseCommandLine(argv);
  } catch (err) {
    expect(err).toBeInstanceOf(SparsifyError);
    expect((err as SparsifyError).code).toBe('USAGE');
    return (err as SparsifyError).message;
  }
  throw new Error('expected a usage error');
}

describe('parseCommandLine: copy mode', () => {
  it('takes virt-sparsify options and resolves paths', () => {
    const { options } = run('--format', 'qcow2', '--convert', 'raw', '--ignore', '/dev/sda1', '--ignore', 'VG', '--zero', '/dev/sda2', 'in.qcow2', 'out.img');
    expect(options).toMatchObject({
      mode: 'copy',
      input: resolve('in.qcow2'),
      output: resolve('out.img'),
      format: 'qcow2',
      convert: 'raw',
      ignore: ['/dev/sda1', 'VG'],
      zero: ['/dev/sda2'],
      compress: false,
      overwrite: false,
      noZero: false,
      engine: 'auto',
      checkTmpdir: 'warn',
    });
  });

  it('accepts -f, -o, --compress, --overwrite, --no-zero and --check-tmpdir short forms', () => {
    const { options } = run('-f', 'raw', '--compress', '--convert', 'qcow2', '-o', 'cluster_size=65536', '--overwrite', '--no-zero', '--check-tmpdir', 'c', 'a', 'b');
    expect(options).toMatchObject({ format: 'raw', compress: true, outputOptions: 'cluster_size=65536', overwrite: true, noZero: true, checkTmpdir: 'continue' });
  });

  it('leaves --compress and -o against the output format to the copy job (modes/output-format.ts)', () => {
    expect(run('--compress', '--convert', 'raw', 'a', 'b').options).toMatchObject({ compress: true, convert: 'raw' });
    expect(run('-o', 'cluster_size=65536', '--convert', 'raw', 'a', 'b').options).toMatchObject({ outputOptions: 'cluster_size=65536' });
  });

  it('--no-zero does not swallow --zero FS', () => {
    const { options } = run('--zero', '/dev/sda1', '--no-zero', 'a', 'b');
    expect(options).toMatchObject({ zero: ['/dev/sda1'], noZero: true });
  });

  it('refuses what virt-sparsify refuses, with its messages', () => {
    expect(usageError('a')).toMatch(/usage: sparsify \[--options\] indisk outdisk/);
    expect(usageError('a', 'a')).toMatch(/same disk image for input and output/);
    expect(usageError('--check-tmpdir', 'maybe', 'a', 'b')).toMatch(/--check-tmpdir: unknown argument/);
    expect(usageError('--convert', 'qed2', 'a', 'b')).toMatch(/unsupported output format/);
    expect(usageError('a', '/dev/null')).toMatch(/cannot be a character device/);
    expect(usageError('--engine', 'magic', 'a', 'b')).toMatch(/engine/);
    expect(usageError('--tmp', '/nonexistent/dir', 'a', 'b')).toMatch(/--tmp parameter must point to/);
  });

  // Made in beforeAll, not while the file is collected: a filtered or skipped run never calls afterAll.
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sparsify-unit-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--tmp takes a directory or prebuilt:FILE', () => {
    expect(run('--tmp', dir, 'a', 'b').options).toMatchObject({ tmp: { kind: 'dir', path: dir } });
    const file = join(dir, 'overlay.qcow2');
    expect(usageError('--tmp', `prebuilt:${file}`, 'a', 'b')).toMatch(/file does not exist/);
    writeFileSync(file, '');
    expect(run('--tmp', `prebuilt:${file}`, 'a', 'b').options).toMatchObject({ tmp: { kind: 'prebuilt', path: file } });
  });
});

describe('parseCommandLine: in-place mode', () => {
  it('takes one disk, --inplace alias too', () => {
    expect(run('--in-place', 'd.img').options).toMatchObject({ mode: 'in-place', input: resolve('d.img') });
    expect(run('--inplace', 'd.img').options.mode).toBe('in-place');
  });

  it('--verify in both modes, off by default', () => {
    expect(run('--in-place', '--verify', 'd.img').options).toMatchObject({ mode: 'in-place', verify: true });
    expect(run('--verify', 'a', 'b').options).toMatchObject({ mode: 'copy', verify: true });
    expect(run('a', 'b').options.verify).toBe(false);
  });

  it('refuses copy-only options with virt-sparsify messages', () => {
    expect(usageError('--in-place', '--compress', 'd')).toMatch(/--in-place and --compress/);
    expect(usageError('--in-place', '--convert', 'raw', 'd')).toMatch(/--in-place and --convert/);
    expect(usageError('--in-place', '-o', 'x=y', 'd')).toMatch(/--in-place and -o/);
    expect(usageError('--in-place', '--tmp', '/tmp', 'd')).toMatch(/--in-place and --tmp/);
    expect(usageError('--in-place', '--check-tmpdir', 'fail', 'd')).toMatch(/--in-place and --check-tmpdir/);
    expect(usageError('--in-place', '--overwrite', 'd')).toMatch(/--in-place and --overwrite/);
    // Several disks in place are a batch (issue 13), each disk its own run.
    expect(parseCommandLine(['--in-place', 'a', 'b']).kind).toBe('batch');
  });
});

describe('parseCommandLine: presentation', () => {
  it('--machine-readable with no disks asks for capabilities', () => {
    expect(parseCommandLine(['--machine-readable']).kind).toBe('capabilities');
  });

  it('--machine-readable=TARGET forms', () => {
    expect(run('--machine-readable', 'a', 'b').presentation.machineReadable).toEqual({ kind: 'stream', stream: 'stdout' });
    expect(run('--machine-readable=stream:stderr', 'a', 'b').presentation.machineReadable).toEqual({ kind: 'stream', stream: 'stderr' });
    expect(run('--machine-readable=file:/tmp/x', 'a', 'b').presentation.machineReadable).toEqual({ kind: 'file', path: '/tmp/x' });
    expect(run('--machine-readable=fd:3', 'a', 'b').presentation.machineReadable).toEqual({ kind: 'fd', fd: 3 });
    expect(usageError('--machine-readable=bogus', 'a', 'b')).toMatch(/--machine-readable/);
  });

  it('-v -x -q', () => {
    expect(run('-v', '-x', '-q', 'a', 'b').presentation).toMatchObject({ verbose: true, trace: true, quiet: true });
  });

  it("accepts virt-sparsify's presentation options with no effect (its own test scripts pass --debug-gc); --echo-keys with no key to read too", () => {
    const plain = run('--in-place', 'a');
    for (const flag of ['--debug-gc', '--colour', '--colours', '--colors', '--color', '--wrap', '--echo-keys']) {
      expect(run(flag, '--in-place', 'a')).toEqual(plain);
    }
  });

  it('--key (repeatable) and --keys-from-stdin make the key request; the keys stay redacted', () => {
    const c = run('--key', '/dev/sda2:key:s3cret', '--key', 'all:file:/k', '--keys-from-stdin', 'a', 'b');
    const keys = c.options.keys!;
    expect(keys.fromStdin).toBe(true);
    expect(keys.selectors.map((s) => [s.id, s.source.kind])).toEqual([['/dev/sda2', 'string'], ['all', 'file']]);
    expect(JSON.stringify(c.options)).not.toContain('s3cret');
    expect(run('a', 'b').options.keys).toBeUndefined();
    expect(keys.echoKeys).toBeUndefined();
    expect(run('--keys-from-stdin', '--echo-keys', 'a', 'b').options.keys).toEqual({ selectors: [], fromStdin: true, echoKeys: true });
    const bad = usageError('--key', '/dev/sda2:kee:s3cret', 'a', 'b');
    expect(bad).toBe('--key takes ID:key:STRING or ID:file:FILE (the value is not shown: it may hold a key)');
  });

  it('--help and -V exit 0 without a run', () => {
    expect(parseCommandLine(['-V'])).toEqual({ kind: 'exit', code: 0 });
  });
});

describe('parseCommandLine: --inspect', () => {
  function inspect(...argv: string[]) {
    const c = parseCommandLine(argv);
    if (c.kind !== 'inspect') throw new Error(`expected an inspection, got ${c.kind}`);
    return c.request;
  }

  it('takes one disk; a table by default, --xml, or --json FILE (- for stdout)', () => {
    expect(inspect('--inspect', 'd.img')).toEqual({ disk: resolve('d.img'), show: { kind: 'table' } });
    expect(inspect('--inspect', '--xml', '--format', 'raw', 'd.img')).toEqual({ disk: resolve('d.img'), format: 'raw', show: { kind: 'xml' } });
    expect(inspect('--inspect', '--json', '-', 'd.img').show).toEqual({ kind: 'json', file: '-' });
    expect(inspect('--inspect', '--json', 'r.json', 'd.img').show).toEqual({ kind: 'json', file: resolve('r.json') });
  });

  it('refuses what would write or copy, and --xml without --inspect', () => {
    expect(usageError('--inspect', 'a', 'b')).toMatch(/usage: sparsify --inspect/);
    expect(usageError('--inspect', '--in-place', 'd')).toMatch(/--inspect and --in-place/);
    expect(usageError('--inspect', '--convert', 'raw', 'd')).toMatch(/--inspect and --convert/);
    expect(usageError('--inspect', '-o', 'x=y', 'd')).toMatch(/--inspect and -o/);
    expect(usageError('--inspect', '--no-zero', 'd')).toMatch(/--inspect and --no-zero/);
    expect(usageError('--inspect', '--zero', '/dev/sda1', 'd')).toMatch(/--inspect with --ignore or --zero/);
    expect(usageError('--inspect', '--xml', '--json', '-', 'd')).toMatch(/either --xml or --json/);
    expect(usageError('--xml', 'a', 'b')).toMatch(/--xml goes with --inspect/);
  });
});

describe('parseCommandLine: --keep-backing', () => {
  it('is a copy-mode option; in place it is refused', () => {
    expect(run('--keep-backing', 'in.qcow2', 'out.qcow2').options).toMatchObject({ mode: 'copy', keepBacking: 'always' });
    expect(run('in.qcow2', 'out.qcow2').options).not.toHaveProperty('keepBacking');
    expect(usageError('--in-place', '--keep-backing', 'in.qcow2')).toMatch(/--in-place and --keep-backing/);
  });
});
