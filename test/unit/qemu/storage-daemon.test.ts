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

  it('puts a write guard (blkdebug unsharing write and resize) between the file and a raw format node', () => {
    for (const readOnly of [true, false]) {
      const argv = daemonArgs({ ...base, format: 'raw', readOnly }, paths, 'disk');
      const [proto, guard, fmt, ...rest] = options(argv, '--blockdev');
      expect(rest).toEqual([]);
      expect(proto).toMatchObject({ driver: 'file', 'node-name': 'proto' });
      expect(guard).toEqual({
        driver: 'blkdebug',
        'node-name': 'guard',
        image: 'proto',
        'read-only': readOnly,
        discard: readOnly ? 'ignore' : 'unmap',
        'unshare-child-perms': ['write', 'resize'],
      });
      expect(fmt).toMatchObject({ driver: 'raw', file: 'guard' });
    }
  });

  it('leaves the guard to the format driver for qcow2 (it unshares write on its file itself)', () => {
    const argv = daemonArgs({ ...base, readOnly: true }, paths, 'disk');
    expect(options(argv, '--blockdev').map((n) => n.driver)).toEqual(['file', 'qcow2']);
  });

  it('sets the I/O engine on the file node only when asked', () => {
    const [proto] = options(daemonArgs(base, { ...paths, aio: 'io_uring' }, 'disk'), '--blockdev');
    expect(proto).toMatchObject({ driver: 'file', aio: 'io_uring' });
    expect(options(daemonArgs(base, paths, 'disk'), '--blockdev')[0]).not.toHaveProperty('aio');
  });

  it('refuses detect-zeroes=unmap without discard', () => {
    expect(() => daemonArgs({ ...base, discard: false, detectZeroes: 'unmap' }, paths, 'd')).toThrowError(/detect-zeroes=unmap/);
  });
});
