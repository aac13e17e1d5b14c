import { describe, expect, it } from 'vitest';
import { diskRuns, outputNames } from '../../../src/libvirt/disk-runs.js';
import type { DomainDefinition, DomainDisk } from '../../../src/libvirt/domain-xml.js';
import type { CopyOptions, InPlaceOptions } from '../../../src/options.js';
import { refusal } from '../../helpers/refusal.js';

const common = { ignore: [], zero: ['/dev/sda2'], engine: 'auto', verify: true, jsonFile: '/r/report.json' } as const;
const inPlace: InPlaceOptions = { mode: 'in-place', input: '/placeholder', ...common };
const copy: CopyOptions = {
  mode: 'copy', input: '/out/.in', output: '/out/.out', ...common, compress: false,
  tmp: { kind: 'dir', path: '/tmp' }, checkTmpdir: 'warn', overwrite: false, noZero: false, convert: 'qcow2',
};
const disk = (target: string, path: string, format = 'raw', kind: 'file' | 'block' = 'file'): DomainDisk => ({ target, kind, path, format, hasBacking: false });
const def = (disks: DomainDisk[]): DomainDefinition => ({ name: 'guest', disks, skipped: [{ target: 'sda', reason: 'a cdrom' }] });

describe('diskRuns', () => {
  it('in place: one run per disk on the disk itself, in its format, with the options given and no JSON of its own', () => {
    const runs = diskRuns(def([disk('vda', '/i/a.qcow2', 'qcow2'), disk('vdb', '/dev/vg/lv', 'raw', 'block')]), inPlace);
    expect(runs.map((r) => r.options)).toEqual([
      { mode: 'in-place', input: '/i/a.qcow2', format: 'qcow2', ignore: [], zero: ['/dev/sda2'], engine: 'auto', verify: true },
      { mode: 'in-place', input: '/dev/vg/lv', format: 'raw', ignore: [], zero: ['/dev/sda2'], engine: 'auto', verify: true },
    ]);
  });

  it('copy: each output in the output directory, named after its disk', () => {
    const runs = diskRuns(def([disk('vda', '/i/a.qcow2', 'qcow2'), disk('vdb', '/dev/vg/lv', 'raw', 'block')]), copy, '/small');
    expect(runs.map((r) => [r.options.input, r.options.format, r.options.mode === 'copy' && r.options.output, r.options.mode === 'copy' && r.options.convert])).toEqual([
      ['/i/a.qcow2', 'qcow2', '/small/a.qcow2', 'qcow2'],
      ['/dev/vg/lv', 'raw', '/small/lv.raw', 'qcow2'],
    ]);
    expect(runs.every((r) => r.options.jsonFile === undefined)).toBe(true);
  });

  it('a domain with no disk to take is refused, with each reason', () => {
    expect(refusal(() => diskRuns(def([]), inPlace)).message).toBe('domain ‘guest’ has no disk sparsify can take (sda: a cdrom)');
  });
});

describe('outputNames', () => {
  it("two disks of the same base name are told apart by their targets; others keep theirs", () => {
    const names = outputNames([disk('vda', '/a/disk.img'), disk('vdb', '/b/disk.img'), disk('vdc', '/c/other.img')]);
    expect([...names]).toEqual([['vda', 'vda-disk.img'], ['vdb', 'vdb-disk.img'], ['vdc', 'other.img']]);
  });
});
