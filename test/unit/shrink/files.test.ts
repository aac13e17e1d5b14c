import { describe, expect, it } from 'vitest';
import { firstDifference, makeListing, parseChecksums } from '../../../src/shrink/files.js';

const sums = (text: string) => parseChecksums(text);
const A = 'd41d8cd98f00b204e9800998ecf8427e';
const B = '0cc175b9c0f1b6a831c399e269772661';

describe('the file listing of a resized filesystem (src/shrink/files.ts)', () => {
  it('reads md5sum lines as path → checksum, paths from the filesystem root, escaped names as they are', () => {
    const m = sums(`${A}  ./etc/passwd\n${B}  ./a b\n\\${A}  ./odd\\nname\n`);
    expect([...m]).toEqual([
      ['/etc/passwd', A],
      ['/a b', B],
      ['/odd\\nname', A],
    ]);
    expect(() => sums('not a line\n')).toThrow(/not a checksum line/);
    // No regular file: xargs ran md5sum once on its empty stdin.
    expect(sums(`${A}  -\n`).size).toBe(0);
  });

  it('adds every path find0 gives, a regular file keeping its checksum; counts the regular files', () => {
    const l = makeListing('/dev/sda1', 'etc\0etc/passwd\0bin\0lost+found\0', sums(`${A}  ./etc/passwd\n`));
    expect(l.files).toBe(1);
    expect([...l.entries].sort()).toEqual([
      ['/bin', ''],
      ['/etc', ''],
      ['/etc/passwd', A],
      ['/lost+found', ''],
    ]);
  });

  it('names the first differing path in path order: a content changed, a path missing, a path new', () => {
    const before = makeListing('/dev/sda1', 'etc\0etc/passwd\0etc/shadow\0var\0', sums(`${A}  ./etc/passwd\n${A}  ./etc/shadow\n`));
    const same = makeListing('/dev/sda1', 'var\0etc/shadow\0etc/passwd\0etc\0', sums(`${A}  ./etc/shadow\n${A}  ./etc/passwd\n`));
    expect(firstDifference(before, same)).toBeUndefined();
    const changed = makeListing('/dev/sda1', 'etc\0etc/passwd\0etc/shadow\0var\0', sums(`${A}  ./etc/passwd\n${B}  ./etc/shadow\n`));
    expect(firstDifference(before, changed)).toBe('/etc/shadow differs');
    const lost = makeListing('/dev/sda1', 'etc\0etc/shadow\0', sums(`${A}  ./etc/shadow\n`));
    expect(firstDifference(before, lost)).toBe('/etc/passwd is missing');
    const added = makeListing('/dev/sda1', 'etc\0etc/passwd\0etc/passwd-\0etc/shadow\0var\0', sums(`${A}  ./etc/passwd\n${A}  ./etc/shadow\n`));
    expect(firstDifference(before, added)).toBe('/etc/passwd- appeared');
  });
});
