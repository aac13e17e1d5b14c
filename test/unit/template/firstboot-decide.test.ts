import { describe, expect, it } from 'vitest';
import { decideHostKeyBoot } from '../../../src/template/firstboot/decide.js';
import type { SshBootFacts } from '../../../src/template/firstboot/facts.js';
import { FIRSTBOOT_UNIT, UNIT_PATH, WANTS_LINK, firstbootUnitText } from '../../../src/template/firstboot/unit.js';

const debian: SshBootFacts = { sshd: '/usr/sbin/sshd', systemd: true, sshKeygen: '/usr/bin/ssh-keygen', regenerators: [] };

describe('whether a template needs a first-boot unit for its SSH host keys', () => {
  it('sshd under systemd with nothing to make keys (Debian, Ubuntu): the unit, running the guest\'s ssh-keygen', () => {
    const decision = decideHostKeyBoot(debian);
    expect(decision).toMatchObject({ kind: 'unit', sshKeygen: '/usr/bin/ssh-keygen' });
    expect(decision.kind === 'unit' && decision.reason).toMatch(/\/usr\/sbin\/sshd is installed and nothing in the guest makes missing host keys at boot/);
  });

  it('a regenerator in the guest (sshd-keygen@, cloud-init, …): nothing added, and the reason names it', () => {
    expect(decideHostKeyBoot({ ...debian, regenerators: ['sshd-keygen@.service (/usr/lib/systemd/system/sshd-keygen@.service)'] })).toEqual({
      kind: 'nothing',
      reason: 'host keys are made at boot by sshd-keygen@.service (/usr/lib/systemd/system/sshd-keygen@.service)',
    });
  });

  it('no sshd: nothing, whatever else the guest has', () => {
    expect(decideHostKeyBoot({ systemd: false, regenerators: [] })).toEqual({ kind: 'nothing', reason: 'no sshd in the guest' });
  });

  it('sshd without systemd and without a regenerator: a warning that the template boots without host keys', () => {
    const decision = decideHostKeyBoot({ ...debian, systemd: false });
    expect(decision.kind).toBe('warn');
    expect(decision.kind === 'warn' && decision.warning).toMatch(/^the template will boot without SSH host keys: .*not systemd/);
  });

  it('sshd under systemd but no ssh-keygen: a warning, not a unit that cannot run', () => {
    const { sshKeygen: _, ...noKeygen } = debian;
    expect(decideHostKeyBoot(noKeygen).kind).toBe('warn');
  });
});

describe('the first-boot unit', () => {
  const text = firstbootUnitText('/usr/bin/ssh-keygen');
  const line = (key: string) => text.split('\n').filter((l) => l.startsWith(`${key}=`));

  it('runs ssh-keygen -A before either name of the SSH service, from multi-user.target', () => {
    expect(line('ExecStart')).toEqual(['ExecStart=/usr/bin/ssh-keygen -A']);
    expect(line('Before')).toEqual(['Before=ssh.service sshd.service']);
    expect(line('WantedBy')).toEqual(['WantedBy=multi-user.target']);
    expect(line('Type')).toEqual(['Type=oneshot']);
  });

  it('removes its enablement symlink and its file once the keys are made', () => {
    expect(line('ExecStartPost')).toEqual([`ExecStartPost=/bin/rm -f ${WANTS_LINK} ${UNIT_PATH}`]);
    expect(WANTS_LINK).toBe(`/etc/systemd/system/multi-user.target.wants/${FIRSTBOOT_UNIT}`);
    expect(UNIT_PATH).toBe(`/etc/systemd/system/${FIRSTBOOT_UNIT}`);
  });
});
