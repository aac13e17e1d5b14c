/**
 * sparsify's first-boot unit: makes the SSH host keys the template was sealed without, once,
 * before sshd starts, then disables and removes itself. Pure: names, paths and text.
 *
 * Why these lines:
 * - WantedBy=multi-user.target, enabled by the symlink `systemctl enable` would make: a guest
 *   whose machine-id is empty runs `systemctl preset-all` at first boot, but in enable-only
 *   mode, which never disables what is enabled.
 * - Before=ssh.service sshd.service (Debian's name and everyone else's): the keys exist when
 *   sshd checks for them. Default dependencies keep it after local filesystems are writable.
 * - ExecStartPost runs only when ssh-keygen succeeded: a boot that could not make the keys (a
 *   full disk) tries again next time. It removes the enablement symlink (what `systemctl
 *   disable` would remove) and the file; systemd keeps the loaded unit until the next reload.
 * - `ssh-keygen -A` makes every missing key type with its default size and nothing else.
 */
export const FIRSTBOOT_UNIT = 'sparsify-firstboot-ssh-keygen.service';
export const UNIT_PATH = `/etc/systemd/system/${FIRSTBOOT_UNIT}`;
export const WANTS_DIR = '/etc/systemd/system/multi-user.target.wants';
export const WANTS_LINK = `${WANTS_DIR}/${FIRSTBOOT_UNIT}`;

/** The unit's text, running the guest's own ssh-keygen at `sshKeygen`. */
export function firstbootUnitText(sshKeygen: string): string {
  return [
    '# Written by sparsify --template: this system was sealed without SSH host keys and nothing',
    '# else in it makes them at boot. Runs once, before sshd, then removes itself.',
    '[Unit]',
    'Description=Generate SSH host keys on first boot (sparsify)',
    'Before=ssh.service sshd.service',
    '',
    '[Service]',
    'Type=oneshot',
    `ExecStart=${sshKeygen} -A`,
    `ExecStartPost=/bin/rm -f ${WANTS_LINK} ${UNIT_PATH}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}
