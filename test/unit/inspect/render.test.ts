import { describe, expect, it } from 'vitest';
import { parseStringPromise } from 'xml2js';
import { parseHash, sortMountpoints } from '../../../src/inspect/guest.js';
import { inspectionJson, inspectionTable, inspectionXml } from '../../../src/inspect/render.js';
import type { DiskInspection } from '../../../src/inspect/types.js';

const debian: DiskInspection = {
  disk: '/images/guest.raw',
  format: 'raw',
  operatingSystems: [
    {
      root: '/dev/sda1',
      type: 'linux',
      arch: 'x86_64',
      distro: 'debian',
      productName: '12.8',
      majorVersion: 12,
      minorVersion: 8,
      packageFormat: 'deb',
      packageManagement: 'apt',
      hostname: 'web-1',
      osinfo: 'debian12',
      mountpoints: [
        { mountpoint: '/', device: '/dev/sda1' },
        { mountpoint: '/boot', device: '/dev/sda3' },
      ],
      filesystems: [
        { device: '/dev/sda1', type: 'ext4', label: 'root', uuid: 'aaaa' },
        { device: '/dev/sda2', type: 'swap', uuid: 'bbbb' },
      ],
    },
  ],
  filesystems: [
    { device: '/dev/sda1', type: 'ext4', label: 'root', uuid: 'aaaa' },
    { device: '/dev/sda2', type: 'swap', uuid: 'bbbb' },
    { device: '/dev/sda4' },
  ],
};

describe('guestfish results', () => {
  it('parseHash splits each line at the first ": " and skips what has none', () => {
    expect(parseHash('/: /dev/sda1\n/srv: /dev/vg/a: b\nnoise\n')).toEqual([
      ['/', '/dev/sda1'],
      ['/srv', '/dev/vg/a: b'],
    ]);
  });

  it('sortMountpoints puts the shortest first, then by name (as virt-inspector)', () => {
    const sorted = sortMountpoints([{ mountpoint: '/var/log' }, { mountpoint: '/boot' }, { mountpoint: '/' }, { mountpoint: '/home' }]);
    expect(sorted.map((m) => m.mountpoint)).toEqual(['/', '/boot', '/home', '/var/log']);
  });
});

describe('--inspect output', () => {
  it('XML: virt-inspector element names, attributes and text; absent fields left out', async () => {
    const doc = await parseStringPromise(inspectionXml(debian));
    const os = doc.operatingsystems.operatingsystem;
    expect(os).toHaveLength(1);
    expect(os[0]).toMatchObject({
      root: ['/dev/sda1'],
      name: ['linux'],
      arch: ['x86_64'],
      distro: ['debian'],
      product_name: ['12.8'],
      major_version: ['12'],
      minor_version: ['8'],
      package_format: ['deb'],
      package_management: ['apt'],
      hostname: ['web-1'],
      osinfo: ['debian12'],
    });
    expect(os[0].product_variant).toBeUndefined();
    expect(os[0].mountpoints[0].mountpoint).toEqual([
      { _: '/', $: { dev: '/dev/sda1' } },
      { _: '/boot', $: { dev: '/dev/sda3' } },
    ]);
    expect(os[0].filesystems[0].filesystem).toEqual([
      { $: { dev: '/dev/sda1' }, type: ['ext4'], label: ['root'], uuid: ['aaaa'] },
      { $: { dev: '/dev/sda2' }, type: ['swap'], uuid: ['bbbb'] },
    ]);
  });

  it('XML escapes what a guest wrote into its own hostname', async () => {
    const hostile = { ...debian, operatingSystems: [{ ...debian.operatingSystems[0]!, hostname: '<x>&"y"</x>' }] };
    const text = inspectionXml(hostile);
    expect(text).not.toContain('<x>');
    expect((await parseStringPromise(text)).operatingsystems.operatingsystem[0].hostname).toEqual(['<x>&"y"</x>']);
  });

  it('JSON round-trips the inspection', () => {
    expect(JSON.parse(inspectionJson(debian))).toEqual(debian);
  });

  it('table: the system, its mount table, then every filesystem with - for what is unknown', () => {
    const lines = inspectionTable(debian).split('\n');
    expect(lines).toContain('Distribution: debian');
    expect(lines).toContain('Version:      12.8');
    expect(lines).toContain('Packages:     deb (apt)');
    expect(lines).toContain('  /      /dev/sda1');
    expect(lines).toContain('/dev/sda2   swap  -      bbbb');
    expect(lines).toContain('/dev/sda4   -     -      -');
  });

  it('table without an operating system says so and still lists the filesystems', () => {
    const text = inspectionTable({ ...debian, operatingSystems: [] });
    expect(text).toContain('No operating system found.');
    expect(text).toContain('/dev/sda1   ext4  root   aaaa');
  });
});
