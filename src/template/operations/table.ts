/**
 * The operations sparsify can run on a guest before export, sorted by name as virt-sysprep
 * lists them. Paths and defaults follow virt-sysprep (guestfs-tools sysprep/, 1.48 and later);
 * where sparsify differs, the entry says why.
 */
import { LOGFILE_GLOBS } from './logfiles.js';
import type { Action, Operation } from './types.js';

/** libguestfs' Unix-like OS types: what virt-sysprep's "not Windows" operations run on (never 'unknown'). */
export const UNIX_TYPES: readonly string[] = ['linux', 'freebsd', 'netbsd', 'openbsd', 'hurd', 'minix'];
/** Every OS type libguestfs inspection reports, for operations that look only at paths. */
export const ALL_TYPES: readonly string[] = [...UNIX_TYPES, 'windows', 'dos'];
const LINUX = ['linux'];
/** The distros whose network setup is ifcfg files and NetworkManager keyfiles (virt-sysprep's list). */
const RED_HAT = ['fedora', 'rhel', 'centos', 'scientificlinux', 'oraclelinux', 'redhat-based'];
const DEBIAN = ['debian', 'ubuntu', 'kalilinux'];

const IFCFG = '/etc/sysconfig/network-scripts/ifcfg-*';
/** A per-user file of root's home and of every home under /home (virt-sysprep looks nowhere else). */
const homes = (name: string): string[] => [`/root/${name}`, `/home/*/${name}`];
const removeAll = (globs: readonly string[]): Action[] => globs.map((glob) => ({ kind: 'remove', glob }));
const removeFiles = (globs: readonly string[]): Action[] => globs.map((glob) => ({ kind: 'remove-file', glob }));

export const OPERATIONS: readonly Operation[] = [
  {
    name: 'backup-files',
    defaultOn: true,
    description: 'Remove editor backup files (*.bak, *~)',
    appliesTo: { osTypes: ALL_TYPES },
    actions: [
      { kind: 'remove-by-name', roots: ['/etc', '/root', '/srv', '/tmp', '/var'], names: ['*.bak', '*~'], when: { osTypes: UNIX_TYPES } },
      { kind: 'remove-by-name', roots: ['/'], names: ['*.bak', '*~'], when: { osTypes: ['windows', 'dos'] } },
    ],
  },
  {
    name: 'bash-history',
    defaultOn: true,
    description: "Remove the bash history of root and of the users under /home",
    appliesTo: { osTypes: UNIX_TYPES },
    actions: removeFiles(homes('.bash_history')),
  },
  {
    name: 'crash-data',
    defaultOn: true,
    description: 'Remove kernel crash dumps (kdump)',
    appliesTo: { osTypes: LINUX },
    actions: removeAll(['/var/crash/*', '/var/log/dump/*']),
  },
  {
    name: 'cron-spool',
    defaultOn: true,
    description: "Remove the users' cron and at jobs",
    appliesTo: { osTypes: ALL_TYPES },
    // at's job counter (.SEQ) is reset rather than removed: at refuses to queue without it.
    actions: [
      { kind: 'remove-files-below', dir: '/var/spool/cron', keep: ['.SEQ'] },
      { kind: 'reset-file', path: '/var/spool/cron/atjobs/.SEQ', content: '00000\n' },
      ...removeFiles(['/var/spool/atjobs/*', '/var/spool/atspool/*']),
      { kind: 'reset-file', path: '/var/spool/atjobs/.SEQ', content: '00000\n' },
      { kind: 'remove-files-below', dir: '/var/spool/at', keep: ['.SEQ'] },
      { kind: 'reset-file', path: '/var/spool/at/.SEQ', content: '00000\n' },
    ],
  },
  {
    name: 'dhcp-client-state',
    defaultOn: true,
    description: "Remove the DHCP client's leases",
    appliesTo: { osTypes: LINUX },
    actions: removeAll(['/var/lib/dhclient/*', '/var/lib/dhcp/*']),
  },
  {
    name: 'dhcp-server-state',
    defaultOn: true,
    description: "Remove the DHCP server's leases",
    appliesTo: { osTypes: ALL_TYPES },
    actions: removeAll(['/var/lib/dhcpd/*']),
  },
  {
    name: 'logfiles',
    defaultOn: true,
    description: 'Remove log files, the systemd journal and installer leftovers',
    appliesTo: { osTypes: LINUX },
    actions: removeAll(LOGFILE_GLOBS),
  },
  {
    name: 'lvm-system-devices',
    defaultOn: true,
    description: "Remove LVM's system.devices (it names disks by ids a clone does not have)",
    appliesTo: { osTypes: LINUX },
    actions: removeFiles(['/etc/lvm/devices/system.devices']),
  },
  {
    name: 'machine-id',
    defaultOn: true,
    description: 'Empty the machine ID (systemd makes a new one at first boot)',
    appliesTo: { osTypes: UNIX_TYPES },
    // Emptied, not removed: an empty file is systemd's "first boot" signal; a missing one is not.
    actions: [
      { kind: 'empty-file', path: '/etc/machine-id' },
      { kind: 'empty-file', path: '/var/lib/dbus/machine-id' },
    ],
  },
  {
    name: 'mail-spool',
    defaultOn: true,
    description: 'Remove the mail in the local mail spool',
    appliesTo: { osTypes: ALL_TYPES },
    actions: removeAll(['/var/spool/mail/*', '/var/mail/*']),
  },
  {
    name: 'net-hostname',
    defaultOn: true,
    description: 'Remove HOSTNAME and DHCP_HOSTNAME from ifcfg network configuration',
    appliesTo: { osTypes: LINUX, distros: RED_HAT },
    actions: [{ kind: 'drop-lines', glob: IFCFG, prefixes: ['HOSTNAME=', 'DHCP_HOSTNAME='] }],
  },
  {
    name: 'net-hwaddr',
    defaultOn: true,
    description: 'Remove HWADDR (a fixed MAC address) from ifcfg network configuration',
    appliesTo: { osTypes: LINUX, distros: RED_HAT },
    actions: [{ kind: 'drop-lines', glob: IFCFG, prefixes: ['HWADDR='] }],
  },
  {
    name: 'net-nmconn',
    defaultOn: true,
    description: "Remove NetworkManager's local connection profiles (keyfiles)",
    appliesTo: { osTypes: LINUX, distros: RED_HAT },
    actions: removeFiles(['/etc/NetworkManager/system-connections/*.nmconnection']),
  },
  {
    name: 'pacct-log',
    defaultOn: true,
    description: 'Empty the process accounting log',
    appliesTo: { osTypes: LINUX, distros: [...RED_HAT, ...DEBIAN] },
    // virt-sysprep removes every pacct* and creates pacct anew; emptying pacct and removing the
    // rotated ones ends the same, and keeps the log's owner and mode (it names every command run).
    actions: [
      { kind: 'remove-file', glob: '/var/account/pacct?*', when: { distros: RED_HAT } },
      { kind: 'empty-file', path: '/var/account/pacct', when: { distros: RED_HAT } },
      { kind: 'remove-file', glob: '/var/log/account/pacct?*', when: { distros: DEBIAN } },
      { kind: 'empty-file', path: '/var/log/account/pacct', when: { distros: DEBIAN } },
    ],
  },
  {
    name: 'package-manager-cache',
    defaultOn: true,
    description: "Remove the package manager's downloaded packages",
    appliesTo: { osTypes: ALL_TYPES },
    actions: [
      { kind: 'remove-files-below', dir: '/var/cache/apt/archives', when: { packageManagers: ['apt'] } },
      // Beyond virt-sysprep: apt's binary caches, rebuilt by the next apt command.
      { kind: 'remove-file', glob: '/var/cache/apt/*.bin', when: { packageManagers: ['apt'] } },
      { kind: 'remove-files-below', dir: '/var/cache/dnf', when: { packageManagers: ['dnf'] } },
      { kind: 'remove-files-below', dir: '/var/cache/yum', when: { packageManagers: ['yum'] } },
      { kind: 'remove-files-below', dir: '/var/cache/zypp*', when: { packageManagers: ['zypper'] } },
    ],
  },
  {
    name: 'passwd-backups',
    defaultOn: true,
    description: 'Remove /etc/passwd- and the other account-file backups',
    appliesTo: { osTypes: LINUX },
    actions: removeFiles(['group-', 'gshadow-', 'passwd-', 'shadow-', 'subgid-', 'subuid-'].map((f) => `/etc/${f}`)),
  },
  {
    name: 'random-seed',
    defaultOn: true,
    description: 'Remove the saved random seed, so that clones do not share it',
    appliesTo: { osTypes: LINUX },
    // Not a virt-sysprep operation: virt-sysprep writes host randomness into this file once,
    // which every clone of a template would then share. Removing it leaves each clone to seed
    // itself at first boot (systemd-random-seed saves a fresh one); the paths are the ones
    // virt-customize knows.
    actions: removeFiles(['/var/lib/random-seed', '/var/lib/systemd/random-seed', '/var/lib/urandom/random-seed', '/var/lib/misc/random-seed', '/etc/random-seed']),
  },
  {
    name: 'rpm-db',
    defaultOn: true,
    description: "Remove RPM's host-specific database environment files (rpm recreates them)",
    appliesTo: { osTypes: ALL_TYPES, packageFormats: ['rpm'] },
    actions: removeFiles(['/var/lib/rpm/__db.*']),
  },
  {
    name: 'ssh-hostkeys',
    defaultOn: true,
    description: "Remove the SSH server's host keys",
    appliesTo: { osTypes: UNIX_TYPES },
    // Unlike virt-sysprep, a guest whose sshd would find no keys at boot gets a unit that makes
    // them: a template that boots to an unreachable sshd is the known trap.
    actions: [...removeFiles(['/etc/ssh/*_host_*']), { kind: 'host-keys-at-boot' }],
  },
  {
    name: 'ssh-userdir',
    defaultOn: true,
    description: 'Remove the .ssh directories of root and of the users under /home',
    appliesTo: { osTypes: UNIX_TYPES },
    actions: removeAll(homes('.ssh')),
  },
  {
    name: 'tmp-files',
    defaultOn: true,
    description: 'Remove everything in /tmp and /var/tmp',
    appliesTo: { osTypes: UNIX_TYPES },
    actions: [
      { kind: 'empty-dir', dir: '/tmp' },
      { kind: 'empty-dir', dir: '/var/tmp' },
    ],
  },
  {
    name: 'udev-persistent-net',
    defaultOn: true,
    description: "Remove udev's persistent network names (they pin the old MAC address to eth0)",
    appliesTo: { osTypes: LINUX },
    actions: removeFiles(['/etc/udev/rules.d/70-persistent-net.rules']),
  },
  {
    name: 'utmp',
    defaultOn: true,
    description: 'Remove the record of who is logged in (utmp)',
    appliesTo: { osTypes: UNIX_TYPES },
    actions: removeFiles(['/var/run/utmp']),
  },
  {
    name: 'zsh-history',
    defaultOn: true,
    description: 'Remove the zsh history of root and of the users under /home',
    appliesTo: { osTypes: UNIX_TYPES },
    actions: removeFiles(homes('.zsh_history')),
  },
];
