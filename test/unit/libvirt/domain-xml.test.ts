import { describe, expect, it } from 'vitest';
import { parseDomainXml, rewriteDiskSources } from '../../../src/libvirt/domain-xml.js';

/** A definition as `virsh dumpxml` gives it, with one disk of each kind sparsify meets. */
const XML = `<domain type='qemu'>
  <name>guest</name>
  <uuid>f40e9afb-a567-4c50-9312-dc377ab171c0</uuid>
  <memory unit='KiB'>65536</memory>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/root.qcow2' index='2'/>
      <backingStore type='file' index='3'>
        <format type='qcow2'/>
        <source file='/images/base.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='/dev/vg/data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/images/plain.img'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <controller type='usb' index='0'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/images/ro.img'/>
      <target dev='vdd' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/isos/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='pool/image'/>
      <target dev='vde' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <target dev='vdf' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <source pool='default' volume='v1'/>
      <target dev='vdg' bus='virtio'/>
    </disk>
    <graphics type='vnc' port='-1' passwd='secret'/>
  </devices>
</domain>`;

describe('parseDomainXml', () => {
  it('takes file and block disks with their driver format; a disk without a driver type is raw; a backing chain is noted', async () => {
    const def = await parseDomainXml(XML);
    expect(def.name).toBe('guest');
    expect(def.uuid).toBe('f40e9afb-a567-4c50-9312-dc377ab171c0');
    expect(def.disks).toEqual([
      { target: 'vda', kind: 'file', path: '/images/root.qcow2', format: 'qcow2', hasBacking: true },
      { target: 'vdb', kind: 'block', path: '/dev/vg/data', format: 'raw', hasBacking: false },
      { target: 'vdc', kind: 'file', path: '/images/plain.img', format: 'raw', hasBacking: false },
    ]);
  });

  it('skips read-only disks, cdroms, network disks, disks with no source and pool volumes, each with its reason', async () => {
    const def = await parseDomainXml(XML);
    expect(def.skipped).toEqual([
      { target: 'vdd', reason: 'read-only' },
      { target: 'sda', reason: 'a cdrom' },
      { target: 'vde', reason: 'a network disk (rbd)' },
      { target: 'vdf', reason: 'it has no source' },
      { target: 'vdg', reason: "disk type 'volume' is not supported (only file and block)" },
    ]);
  });

  it('an empty <backingStore/> is no chain', async () => {
    const def = await parseDomainXml(XML.replace(/<backingStore type='file'[\s\S]*?<\/backingStore>\n\s*<target dev='vda'/, "<backingStore/><target dev='vda'"));
    expect(def.disks[0]).toMatchObject({ target: 'vda', hasBacking: false });
  });

  it('refuses what is not a domain definition, saying why', async () => {
    await expect(parseDomainXml('<network><name>x</name></network>')).rejects.toMatchObject({ code: 'BAD_DOMAIN', message: expect.stringMatching(/root element is not <domain>/) });
    await expect(parseDomainXml('<domain><devices/></domain>')).rejects.toMatchObject({ code: 'BAD_DOMAIN', message: expect.stringMatching(/no <name>/) });
    await expect(parseDomainXml('<domain><name>x</name')).rejects.toMatchObject({ code: 'BAD_DOMAIN', message: expect.stringMatching(/not XML/) });
  });
});

describe('rewriteDiskSources', () => {
  it('points the named disks at their new files and formats, drops their backing chain, keeps the rest', async () => {
    const xml = await rewriteDiskSources(
      XML,
      new Map([
        ['vda', { path: '/small/root.qcow2', format: 'qcow2' }],
        ['vdb', { path: '/small/data.raw', format: 'raw' }],
        ['vdc', { path: '/small/plain.img', format: 'qcow2' }],
      ]),
    );
    const def = await parseDomainXml(xml);
    expect(def.disks).toEqual([
      { target: 'vda', kind: 'file', path: '/small/root.qcow2', format: 'qcow2', hasBacking: false },
      { target: 'vdb', kind: 'file', path: '/small/data.raw', format: 'raw', hasBacking: false },
      { target: 'vdc', kind: 'file', path: '/small/plain.img', format: 'qcow2', hasBacking: false },
    ]);
    expect(def.skipped).toEqual((await parseDomainXml(XML)).skipped);
    expect(def.uuid).toBe('f40e9afb-a567-4c50-9312-dc377ab171c0');
    expect(xml).toContain("cache=\"none\"");
    expect(xml).toContain('passwd="secret"');
    expect(xml).not.toContain('/images/root.qcow2');
    expect(xml).not.toContain('/dev/vg/data');
  });

  it('refuses a target the definition does not have', async () => {
    await expect(rewriteDiskSources(XML, new Map([['vdz', { path: '/x', format: 'raw' }]]))).rejects.toMatchObject({ code: 'BAD_DOMAIN', message: expect.stringMatching(/vdz/) });
  });

  it('a copy that kept its backing chain (--keep-backing) keeps the disk\'s <backingStore>: the same base below the new file', async () => {
    const xml = await rewriteDiskSources(XML, new Map([['vda', { path: '/small/root.qcow2', format: 'qcow2', keepsBacking: true }]]));
    const def = await parseDomainXml(xml);
    expect(def.disks[0]).toEqual({ target: 'vda', kind: 'file', path: '/small/root.qcow2', format: 'qcow2', hasBacking: true });
    expect(xml).toContain('<backingStore type="file" index="3">');
  });
});
