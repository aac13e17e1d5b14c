/** The closing text's --template section and the report's template section, from what the operations did. */
import { describe, expect, it } from 'vitest';
import type { InspectedOs } from '../../../src/inspect/types.js';
import { formatTemplate } from '../../../src/report/template.js';
import { WINDOWS_WARNING, templateReport } from '../../../src/template/seal.js';
import type { ApplyReport } from '../../../src/template/operations/apply.js';

const debian: InspectedOs = {
  root: '/dev/sda1',
  type: 'linux',
  distro: 'debian',
  productName: 'Debian GNU/Linux 12 (bookworm)',
  majorVersion: 12,
  minorVersion: 0,
  hostname: 'web1',
  mountpoints: [{ mountpoint: '/', device: '/dev/sda1' }],
  filesystems: [],
};

const applied: ApplyReport = {
  warnings: ['/srv (/dev/sda3) not mounted, so not cleaned: no such directory'],
  operations: [
    { name: 'ssh-hostkeys', changes: [{ path: '/etc/ssh/ssh_host_ed25519_key', change: 'removed', bytes: 4096 }], warnings: [] },
    { name: 'machine-id', changes: [{ path: '/etc/machine-id', change: 'emptied', bytes: 4096 }], warnings: [] },
    { name: 'net-hwaddr', skipped: 'not for this guest (linux, debian, apt)', changes: [], warnings: [] },
    { name: 'cron-spool', changes: [{ path: '/var/spool/cron/atjobs/.SEQ', change: 'reset' }], warnings: ['/var/spool/x: left alone (not a plain path)'] },
  ],
};

describe('templateReport', () => {
  it('counts removed and emptied bytes, keeps each operation, and prefixes operation warnings with its name', () => {
    const t = templateReport(debian, applied, false);
    expect(t.removedBytes).toBe(8192);
    expect(t.guest).toEqual({ root: '/dev/sda1', type: 'linux', distro: 'debian', productName: 'Debian GNU/Linux 12 (bookworm)', majorVersion: 12, minorVersion: 0, hostname: 'web1' });
    expect(t.operations).toHaveLength(4);
    expect(t.warnings).toEqual([applied.warnings[0], 'cron-spool: /var/spool/x: left alone (not a plain path)']);
  });

  it('warns that a Windows guest needs sysprep.exe', () => {
    const t = templateReport({ ...debian, type: 'windows', distro: 'windows' }, { warnings: [], operations: [] }, false);
    expect(t.warnings).toEqual([WINDOWS_WARNING]);
    expect(WINDOWS_WARNING).toMatch(/sysprep\.exe/);
  });
});

describe('formatTemplate', () => {
  it('names the guest, every changed path with its bytes, the total and the warnings', () => {
    expect(formatTemplate(templateReport(debian, applied, false))).toEqual([
      'Guest:  debian 12.0 (Debian GNU/Linux 12 (bookworm)), hostname web1, root /dev/sda1',
      'Sealed: 4 operations, 3 with something to do; 8.0 KiB removed',
      '  ssh-hostkeys:',
      '    removed /etc/ssh/ssh_host_ed25519_key (4.0 KiB)',
      '  machine-id:',
      '    emptied /etc/machine-id (4.0 KiB)',
      '  cron-spool:',
      '    reset /var/spool/cron/atjobs/.SEQ',
      'Warning: /srv (/dev/sda3) not mounted, so not cleaned: no such directory',
      'Warning: cron-spool: /var/spool/x: left alone (not a plain path)',
    ]);
  });

  it('speaks in the conditional for a dry run', () => {
    const lines = formatTemplate(templateReport(debian, applied, true));
    expect(lines[1]).toBe('Dry run: 4 operations, 3 with something to do; 8.0 KiB would be removed');
    expect(lines).toContain('    would be removed /etc/ssh/ssh_host_ed25519_key (4.0 KiB)');
  });
});
