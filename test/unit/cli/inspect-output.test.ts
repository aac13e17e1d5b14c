import { describe, expect, it } from 'vitest';
import { inspectionOutputs } from '../../../src/cli/inspect.js';
import { inspectionJson, inspectionTable, inspectionXml } from '../../../src/inspect/render.js';
import type { DiskInspection } from '../../../src/inspect/types.js';

const guest: DiskInspection = {
  disk: '/images/guest.raw',
  format: 'raw',
  operatingSystems: [
    {
      root: '/dev/sda1', type: 'linux', distro: 'debian', majorVersion: 12, minorVersion: 8, hostname: 'web-1',
      mountpoints: [{ mountpoint: '/', device: '/dev/sda1' }],
      filesystems: [{ device: '/dev/sda1', type: 'ext4', uuid: 'aaaa' }],
    },
  ],
  filesystems: [{ device: '/dev/sda1', type: 'ext4', uuid: 'aaaa' }],
};
const bare: DiskInspection = { ...guest, operatingSystems: [] };

describe('inspectionOutputs: what --inspect prints and writes', () => {
  it('the table by default, nothing written', () => {
    expect(inspectionOutputs({ kind: 'table' }, guest)).toEqual({ stdout: inspectionTable(guest) });
  });

  it('--json FILE: the JSON in the file, the table still on stdout', () => {
    expect(inspectionOutputs({ kind: 'json', file: '/tmp/r.json' }, guest)).toEqual({
      stdout: inspectionTable(guest),
      jsonFile: { path: '/tmp/r.json', text: inspectionJson(guest) },
    });
  });

  it('--json -: the JSON alone on stdout', () => {
    expect(inspectionOutputs({ kind: 'json', file: '-' }, guest)).toEqual({ stdout: inspectionJson(guest) });
  });

  it('--xml: the XML alone on stdout; no operating system is an error', () => {
    expect(inspectionOutputs({ kind: 'xml' }, guest)).toEqual({ stdout: inspectionXml(guest) });
    expect(() => inspectionOutputs({ kind: 'xml' }, bare)).toThrow(/no operating system was found on \/images\/guest\.raw/);
    expect(inspectionOutputs({ kind: 'table' }, bare).stdout).toMatch(/No operating system found/);
  });
});
