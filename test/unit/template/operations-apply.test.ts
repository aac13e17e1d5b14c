import { describe, expect, it } from 'vitest';
import type { InspectedOs } from '../../../src/inspect/types.js';
import { conditionHolds, notApplicable } from '../../../src/template/operations/apply.js';
import { OPERATIONS } from '../../../src/template/operations/table.js';

const guest = (fields: Partial<InspectedOs>): InspectedOs => ({
  root: '/dev/sda1',
  type: 'linux',
  majorVersion: 0,
  minorVersion: 0,
  mountpoints: [{ mountpoint: '/', device: '/dev/sda1' }],
  filesystems: [],
  ...fields,
});
const debian = guest({ distro: 'debian', majorVersion: 12, packageFormat: 'deb', packageManagement: 'apt' });
const fedora = guest({ distro: 'fedora', majorVersion: 41, packageFormat: 'rpm', packageManagement: 'dnf' });
const windows = guest({ type: 'windows', distro: 'windows' });
const applying = (os: InspectedOs) => OPERATIONS.filter((op) => notApplicable(op, os) === undefined).map((op) => op.name);

describe('which operations apply to which guest', () => {
  it('a condition holds when every field given matches; a field the guest lacks never matches a list', () => {
    expect(conditionHolds(undefined, debian)).toBe(true);
    expect(conditionHolds({ osTypes: ['linux'], distros: ['debian'] }, debian)).toBe(true);
    expect(conditionHolds({ osTypes: ['linux'], distros: ['fedora'] }, debian)).toBe(false);
    expect(conditionHolds({ packageManagers: ['apt'] }, guest({}))).toBe(false);
  });

  it('Debian: everything but the Red Hat network files and the RPM database', () => {
    const names = OPERATIONS.map((op) => op.name).filter((n) => !['net-hostname', 'net-hwaddr', 'net-nmconn', 'rpm-db'].includes(n));
    expect(applying(debian)).toEqual(names);
  });

  it('Fedora: everything', () => {
    expect(applying(fedora)).toEqual(OPERATIONS.map((op) => op.name));
  });

  it('Windows: the path-only operations, and the reason for the others names the guest', () => {
    // rpm-db applies to any OS type but needs the rpm package format, which Windows lacks.
    expect(applying(windows)).toEqual(['backup-files', 'cron-spool', 'dhcp-server-state', 'mail-spool', 'package-manager-cache']);
    expect(notApplicable(OPERATIONS.find((op) => op.name === 'ssh-hostkeys')!, windows)).toBe('not for this guest (windows, windows)');
  });

  it("package-manager-cache cleans apt's cache on Debian and dnf's on Fedora, not the other's", () => {
    const actions = OPERATIONS.find((op) => op.name === 'package-manager-cache')!.actions;
    const dirs = (os: InspectedOs) => actions.filter((a) => conditionHolds(a.when, os)).map((a) => ('dir' in a ? a.dir : 'glob' in a ? a.glob : ''));
    expect(dirs(debian)).toEqual(['/var/cache/apt/archives', '/var/cache/apt/*.bin']);
    expect(dirs(fedora)).toEqual(['/var/cache/dnf']);
  });
});
