import { describe, expect, it } from 'vitest';
import { baseName, globMatches, isNormalPath, joinPath, parentOf } from '../../../src/template/operations/glob.js';

describe('glob patterns', () => {
  it('* and ? stay within one component', () => {
    expect(globMatches('/var/log/*.log*', '/var/log/dpkg.log')).toBe(true);
    expect(globMatches('/var/log/*.log*', '/var/log/x.log.1.gz')).toBe(true);
    expect(globMatches('/var/log/*.log*', '/var/log/sub/x.log')).toBe(false);
    expect(globMatches('/var/account/pacct?*', '/var/account/pacct')).toBe(false);
    expect(globMatches('/var/account/pacct?*', '/var/account/pacct.1')).toBe(true);
  });

  it('a wildcard never matches a leading dot, unless asked', () => {
    expect(globMatches('/tmp/*', '/tmp/.X11-unix')).toBe(false);
    expect(globMatches('*~', '.vimrc~')).toBe(false);
    expect(globMatches('*~', '.vimrc~', { leadingDot: true })).toBe(true);
  });

  it('a name smuggling a newline and another path is not a match', () => {
    // glob-expand prints the name "x.log\n/etc/shadow" as two lines: the first is a log path anyway,
    // the second is refused.
    const lines = '/var/log/x.log\n/etc/shadow'.split('\n');
    expect(lines.map((l) => globMatches('/var/log/*.log*', l))).toEqual([true, false]);
  });

  it('regex characters in the literal part are literal', () => {
    expect(globMatches('/etc/lvm/devices/system.devices', '/etc/lvm/devices/systemXdevices')).toBe(false);
    expect(globMatches('/var/lib/rpm/__db.*', '/var/lib/rpm/__db.001')).toBe(true);
  });

  it('path helpers', () => {
    expect(parentOf('/etc/machine-id')).toBe('/etc');
    expect(parentOf('/tmp')).toBe('/');
    expect(baseName('/etc/machine-id')).toBe('machine-id');
    expect(joinPath('/', 'tmp')).toBe('/tmp');
    expect(joinPath('/var', 'tmp')).toBe('/var/tmp');
  });

  it('only plain absolute paths are acted on: no ., .. or empty component', () => {
    for (const p of ['/etc/machine-id', '/', '/home/user/.bash_history', '/tmp/..x', '/tmp/...']) expect(isNormalPath(p), p).toBe(true);
    for (const p of ['/var/log/..', '/tmp/../etc', '/tmp/./x', '//etc', '/etc/', 'etc/passwd', '']) expect(isNormalPath(p), p).toBe(false);
    expect(globMatches('/var/log/journal/*', '/var/log/journal/..')).toBe(false);
  });
});
