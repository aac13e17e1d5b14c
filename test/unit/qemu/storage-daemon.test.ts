import { describe, expect, it } from 'vitest';
import { daemonArgs, type ServeOptions } from '../../../src/qemu/storage-daemon.js';

const paths = { socketPath: '/t/q.sock', pidFile: '/t/q.pid', protocolDriver: 'file' as const };
const base: ServeOptions = { file: '/t/ov.qcow2', format: 'qcow2', readOnly: false, discard: true, dir: '/t' };

/** The JSON of each `--opt VALUE` pair, by option name. */
function options(argv: string[], name: string): Record<string, unknown>[] {
  return argv.flatMap((a, i) => (a === name ? [JSON.parse(argv[i + 1]!) as Record<string, unknown>] : []));
}

describe('daemonArgs', () => {
  it('puts discard=unmap on both the file node and the format node', () => {
    const argv = daemonArgs({ ...base, detectZeroes: 'unmap' }, paths, 'disk');
    const [proto, fmt] = options(argv, '--blockdev');
    expect(proto).toMatchObject({ driver: 'file', 'node-name': 'proto', filename: '/t/ov.qcow2', discard: 'unmap', 'read-only': false });
    expect(fmt).toMatchObject({ driver: 'qcow2', file: 'proto', discard: 'unmap', 'detect-zeroes': 'unmap' });
    expect(options(argv, '--export')).toEqual([{ type: 'nbd', id: 'nbd0', 'node-name': 'fmt', name: 'disk', writable: true }]);
    expect(options(argv, '--nbd-server')).toEqual([{ addr: { type: 'unix', path: '/t/q.sock' } }]);
    expect(argv.slice(0, 2)).toEqual(['--pidfile', '/t/q.pid']);
  });

  it('serves read-only without discard or detect-zeroes', () => {
    const argv = daemonArgs({ ...base, readOnly: true, detectZeroes: 'unmap' }, paths, 'disk');
    for (const node of options(argv, '--blockdev')) {
      expect(node).toMatchObject({ 'read-only': true, discard: 'ignore' });
      expect(node).not.toHaveProperty('detect-zeroes');
    }
    expect(options(argv, '--export')[0]).toMatchObject({ writable: false });
  });

  it('exports the compress filter above the format node', () => {
    const argv = daemonArgs({ ...base, discard: false, compress: true }, paths, 'out');
    expect(options(argv, '--blockdev')[2]).toEqual({ driver: 'compress', 'node-name': 'compress', file: 'fmt' });
    expect(options(argv, '--export')[0]).toMatchObject({ 'node-name': 'compress' });
  });

  it('refuses detect-zeroes=unmap without discard', () => {
    expect(() => daemonArgs({ ...base, discard: false, detectZeroes: 'unmap' }, paths, 'd')).toThrowError(/detect-zeroes=unmap/);
  });
});
