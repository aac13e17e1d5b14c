import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../../src/cli/parse-options.js';
import { refusal } from '../../helpers/refusal.js';

const dir = mkdtempSync(join(tmpdir(), 'sparsify-parse-batch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function batch(...argv: string[]) {
  const c = parseCommandLine(argv);
  if (c.kind !== 'batch') throw new Error(`expected a batch, got ${c.kind}`);
  return c.command;
}

const usage = (...argv: string[]) => {
  const e = refusal(() => parseCommandLine(argv));
  expect(e.code).toBe('USAGE');
  return e.message;
};

describe('parseCommandLine: -d DOMAIN and batches', () => {
  it('in place: the domain, the connection and the options every disk gets', () => {
    const { items } = batch('--in-place', '-d', 'guest', '-c', 'qemu:///system', '--zero', '/dev/sda2', '--verify');
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ kind: 'domain', request: { domain: 'guest', connection: { uri: 'qemu:///system' }, updateDomain: false, base: { mode: 'in-place', zero: ['/dev/sda2'], verify: true } } });
  });

  it("copy: --output-dir and --update-domain; without -c, virsh's default connection; --json is the batch's", () => {
    const { items, jsonFile } = batch('--domain', 'guest', '--output-dir', dir, '--update-domain', '--convert', 'qcow2', '--json', join(dir, 'r.json'));
    expect(items[0]).toMatchObject({ kind: 'domain', request: { domain: 'guest', connection: {}, outputDir: dir, updateDomain: true, base: { mode: 'copy', convert: 'qcow2' } } });
    expect(jsonFile).toBe(join(dir, 'r.json'));
  });

  it('--machine-readable goes with a batch, to any target (-d or --all-domains alone is a batch, not the capability query)', () => {
    for (const [arg, target] of [
      ['--machine-readable', { kind: 'stream', stream: 'stdout' }],
      [`--machine-readable=file:${join(dir, 'm')}`, { kind: 'file', path: join(dir, 'm') }],
    ] as const) {
      const c = parseCommandLine(['--in-place', '-d', 'guest', arg]);
      expect(c.kind).toBe('batch');
      expect(c.kind === 'batch' && c.presentation.machineReadable).toEqual(target);
    }
    expect(parseCommandLine(['--in-place', '--all-domains', '--machine-readable']).kind).toBe('batch');
  });

  it('several domains and disks, --jobs N: domains first, each disk its own run without a JSON of its own', () => {
    const { items, jobs } = batch('--in-place', '--jobs', '2', '-d', 'a', 'x.img', '-d', 'b', 'y.qcow2', '--json', join(dir, 'r.json'));
    expect(jobs).toBe(2);
    expect(items.map((i) => (i.kind === 'domain' ? i.request.domain : i.options.input))).toEqual(['a', 'b', resolve('x.img'), resolve('y.qcow2')]);
    expect(items.every((i) => i.kind === 'domain' || i.options.jsonFile === undefined)).toBe(true);
  });

  it('copy mode with --output-dir: each disk its output there, named after it', () => {
    const { items } = batch('--output-dir', dir, '/a/x.img', '/b/y.qcow2');
    expect(items.map((i) => i.kind === 'disk' && i.options.mode === 'copy' && [i.options.input, i.options.output])).toEqual([
      ['/a/x.img', join(dir, 'x.img')],
      ['/b/y.qcow2', join(dir, 'y.qcow2')],
    ]);
  });

  it('refuses what does not go with a batch, saying what to do', () => {
    expect(usage('-d', 'guest')).toMatch(/needs --output-dir DIR/);
    expect(usage('--in-place', '-d', 'guest', '--format', 'raw')).toMatch(/drop --format/);
    expect(usage('--in-place', '-d', 'guest', '--update-domain')).toMatch(/--update-domain goes with copy mode/);
    expect(usage('--in-place', '-d', 'guest', '--output-dir', dir)).toMatch(/--in-place and --output-dir/);
    expect(usage('-d', 'guest', '--output-dir', join(dir, 'missing'))).toMatch(/not a directory/);
    expect(usage('--output-dir', dir, '--update-domain', 'a.img')).toMatch(/--update-domain goes with -d/);
    expect(usage('--output-dir', dir, '/a/x.img', '/b/x.img')).toMatch(/two disks named x.img/);
    expect(usage('--in-place', '--jobs', '0', 'a.img', 'b.img')).toMatch(/--jobs: ‘0’/);
    expect(usage('--update-domain', 'a', 'b')).toMatch(/go with -d DOMAIN/);
    expect(usage('-c', 'qemu:///system', 'a', 'b')).toMatch(/go with -d DOMAIN/);
    expect(usage('--inspect', '-d', 'guest', 'x')).toMatch(/--inspect and -d/);
  });

  it('one disk in place, or IN OUT, is no batch', () => {
    expect(parseCommandLine(['--in-place', 'a.img']).kind).toBe('run');
    expect(parseCommandLine(['a.img', 'b.img']).kind).toBe('run');
  });

  it('--all-domains with --filter (repeatable): listed when the batch runs, each domain getting the same request', () => {
    const c = batch('--in-place', '--all-domains', '--filter', 'web-*', '--filter', 'db', '-c', 'qemu:///system');
    expect(c.items).toEqual([]);
    expect(c.allDomains).toMatchObject({ filters: ['web-*', 'db'], request: { connection: { uri: 'qemu:///system' }, updateDomain: false, base: { mode: 'in-place' } } });
    expect(batch('--all-domains', '--output-dir', dir, '--update-domain').allDomains).toMatchObject({ filters: [], request: { outputDir: dir, updateDomain: true } });
  });

  it('--filter without --all-domains, or --all-domains with -d, is a usage error', () => {
    expect(usage('--in-place', '--filter', 'w*', 'x.img')).toBe('--filter goes with --all-domains');
    expect(usage('--in-place', '-d', 'a', '--filter', 'w*')).toBe('--filter goes with --all-domains');
    expect(usage('--in-place', '--all-domains', '-d', 'a')).toMatch(/^you cannot use -d and --all-domains options together/);
  });

  it('--resume makes a batch, even of one disk', () => {
    expect(batch('--in-place', '--resume', 'x.img').resume).toBe(true);
    expect(batch('--in-place', 'x.img', 'y.img').resume).toBe(false);
  });
});
