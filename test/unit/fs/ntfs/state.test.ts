/**
 * The typed state the probe reports for NTFS (ProbeResult.dirty, .hibernated), read from the
 * synthetic volumes of fixtures.ts: the planner decides from these fields, never from text.
 */
import { describe, expect, it } from 'vitest';
import { probeVolume } from '../../../../src/fs/probe.js';
import { memoryReader } from '../../../helpers/mem-reader.js';
import { buildVolume, type VolumeOptions } from './fixtures.js';

const probe = (o: VolumeOptions) => probeVolume(memoryReader(buildVolume(o).image));

describe('the NTFS probe state', () => {
  it.each([
    ['a clean volume', {}],
    ['a cleared hiberfil.sys', { hiberfil: { head: '\0\0\0\0' } }],
    ['a $LogFile flagged clean', { log: [{ lsn: 5, inUse: true, cleanFlag: true }] }],
  ] as const)('%s is neither dirty nor hibernated', async (_name, options) => {
    const fs = await probe(options);
    expect(fs.type).toBe('ntfs');
    expect(fs).not.toHaveProperty('dirty');
    expect(fs).not.toHaveProperty('hibernated');
  });

  it.each([
    ['hiberfil.sys starting with HIBR', { hiberfil: { head: 'HIBR' } }],
    ['hiberfil.sys starting with hibr in an INDX block', { hiberfil: { head: 'hibr', deep: true } }],
    ['hiberfil.sys starting with wake', { hiberfil: { head: 'wake' } }],
    ['a hiberfil.sys shorter than 4 KiB', { hiberfil: { head: '\0\0\0\0', bytes: 100 } }],
    ['a version 2.0 $LogFile (Fast Startup)', { log: [{ lsn: 5, inUse: false, cleanFlag: true, version: [2, 0] }] }],
  ] as const)('%s is hibernated', async (_name, options) => {
    expect(await probe(options)).toMatchObject({ type: 'ntfs', hibernated: true });
  });

  it.each([
    ['the dirty flag', { volumeFlags: 0x0001 }],
    ['chkdsk underway', { volumeFlags: 0x4000 }],
    ['a $LogFile with changes to replay', { log: [{ lsn: 5, inUse: true, cleanFlag: false }] }],
  ] as const)('%s is dirty, not hibernated', async (_name, options) => {
    const fs = await probe(options);
    expect(fs).toMatchObject({ type: 'ntfs', dirty: true });
    expect(fs).not.toHaveProperty('hibernated');
  });

  it('reports both when Windows left a dirty flag and a hibernation image', async () => {
    expect(await probe({ volumeFlags: 0x0001, hiberfil: { head: 'HIBR' } })).toMatchObject({ dirty: true, hibernated: true });
  });

  it.each([
    ['NTFS version 4.0', { version: [4, 0] }],
    ['a $LogFile without a restart page', { log: 'garbage' }],
  ] as const)('%s has no known state: no field, and the map reader says why', async (_name, options) => {
    const fs = await probe(options);
    expect(fs.type).toBe('ntfs');
    expect(fs).not.toHaveProperty('dirty');
    expect(fs).not.toHaveProperty('hibernated');
  });
});
