import { describe, expect, it } from 'vitest';
import { parseStringPromise } from 'xml2js';
import { buildOvf, VMDK_STREAM_OPTIMIZED_URI } from '../../src/export/ovf.js';
import { ovaDiskPath, systemName } from '../../src/export/ova.js';

describe('buildOvf: the OVA descriptor', () => {
  const disk = { name: 'web-01', diskFile: 'web-01-disk1.vmdk', fileSizeBytes: 123_456_789, capacityBytes: 10 * 2 ** 30, populatedBytes: 987_654_321 };

  it('names the file with its size, and the disk with capacity in bytes, populated size and the streamOptimized URI', async () => {
    const xml = buildOvf(disk);
    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>')).toBe(true);
    const env = (await parseStringPromise(xml)).Envelope;
    expect(env.$.xmlns).toBe('http://schemas.dmtf.org/ovf/envelope/1');
    expect(env.References[0].File[0].$).toEqual({ 'ovf:href': 'web-01-disk1.vmdk', 'ovf:id': 'file1', 'ovf:size': '123456789' });
    expect(env.DiskSection[0].Disk[0].$).toEqual({
      'ovf:capacity': String(10 * 2 ** 30),
      'ovf:capacityAllocationUnits': 'byte',
      'ovf:diskId': 'vmdisk1',
      'ovf:fileRef': 'file1',
      'ovf:format': VMDK_STREAM_OPTIMIZED_URI,
      'ovf:populatedSize': '987654321',
    });
  });

  it('describes one virtual system with an OS section, a CPU, memory, a SCSI controller and the disk on it', async () => {
    const vs = (await parseStringPromise(buildOvf({ ...disk, cpus: 2, memoryMiB: 2048 }))).Envelope.VirtualSystem[0];
    expect(vs.$['ovf:id']).toBe('web-01');
    expect(vs.Name).toEqual(['web-01']);
    expect(vs.OperatingSystemSection[0].$['ovf:id']).toBe('102');
    const items = vs.VirtualHardwareSection[0].Item as Array<Record<string, string[]>>;
    const byType = (t: string) => items.find((i) => i['rasd:ResourceType']![0] === t)!;
    expect(byType('3')['rasd:VirtualQuantity']).toEqual(['2']);
    expect(byType('4')['rasd:VirtualQuantity']).toEqual(['2048']);
    expect(byType('6')['rasd:ResourceSubType']).toEqual(['lsilogic']);
    const hd = byType('17');
    expect(hd['rasd:HostResource']).toEqual(['ovf:/disk/vmdisk1']);
    expect(hd['rasd:Parent']).toEqual(byType('6')['rasd:InstanceID']);
  });

  it('escapes what XML must escape in the name', async () => {
    const xml = buildOvf({ ...disk, name: 'a<b&c' });
    expect(xml).toContain('a&lt;b&amp;c');
    expect((await parseStringPromise(xml)).Envelope.VirtualSystem[0].Name).toEqual(['a<b&c']);
  });
});

describe('systemName and ovaDiskPath', () => {
  it('name the system after the output without .ova, in characters every importer takes', () => {
    expect(systemName('/x/y/web-01.ova')).toBe('web-01');
    expect(systemName('/x/My VM (prod).OVA')).toBe('My_VM__prod_');
    expect(systemName('/x/.ova')).toBe('disk');
    expect(systemName(`/x/${'a'.repeat(200)}.ova`)).toHaveLength(64);
    expect(ovaDiskPath('/w', '/x/web-01.ova')).toBe('/w/web-01-disk1.vmdk');
  });
});
