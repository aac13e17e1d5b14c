import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../../src/cli/parse-options.js';
import { refusal } from '../../helpers/refusal.js';

const dir = mkdtempSync(join(tmpdir(), 'sparsify-parse-domain-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function domain(...argv: string[]) {
  const c = parseCommandLine(argv);
  if (c.kind !== 'domain') throw new Error(`expected a domain run, got ${c.kind}`);
  return c.command;
}

const usage = (...argv: string[]) => {
  const e = refusal(() => parseCommandLine(argv));
  expect(e.code).toBe('USAGE');
  return e.message;
};

describe('parseCommandLine: -d DOMAIN', () => {
  it('in place: the domain, the connection and the options every disk gets', () => {
    const { request } = domain('--in-place', '-d', 'guest', '-c', 'qemu:///system', '--zero', '/dev/sda2', '--verify');
    expect(request).toMatchObject({ domain: 'guest', connection: { uri: 'qemu:///system' }, updateDomain: false, base: { mode: 'in-place', zero: ['/dev/sda2'], verify: true } });
    expect(request.outputDir).toBeUndefined();
  });

  it("copy: --output-dir and --update-domain; without -c, virsh's default connection", () => {
    const { request, jsonFile } = domain('--domain', 'guest', '--output-dir', dir, '--update-domain', '--convert', 'qcow2', '--json', join(dir, 'r.json'));
    expect(request).toMatchObject({ domain: 'guest', connection: {}, outputDir: dir, updateDomain: true, base: { mode: 'copy', convert: 'qcow2' } });
    expect(jsonFile).toBe(join(dir, 'r.json'));
  });

  it('refuses what does not go with -d, saying what to do', () => {
    expect(usage('-d', 'guest')).toMatch(/needs --output-dir DIR/);
    expect(usage('-d', 'guest', 'disk.img')).toMatch(/give no disk arguments/);
    expect(usage('--in-place', '-d', 'guest', '--format', 'raw')).toMatch(/drop --format/);
    expect(usage('--in-place', '-d', 'guest', '--update-domain')).toMatch(/--update-domain goes with copy mode/);
    expect(usage('--in-place', '-d', 'guest', '--output-dir', dir)).toMatch(/--in-place and --output-dir/);
    expect(usage('-d', 'guest', '--output-dir', join(dir, 'missing'))).toMatch(/not a directory/);
    expect(usage('--update-domain', 'a', 'b')).toMatch(/go with -d DOMAIN/);
    expect(usage('-c', 'qemu:///system', 'a', 'b')).toMatch(/go with -d DOMAIN/);
  });
});
