/**
 * The log files, caches and installer leftovers the `logfiles` operation removes from a Linux
 * guest: virt-sysprep's list of paths (guestfs-tools sysprep/sysprep_operation_logfiles.ml),
 * grouped by what writes them.
 */
export const LOGFILE_GLOBS: readonly string[] = [
  // syslog, the kernel ring buffer, logins and the like
  ...['*.log*', 'audit/*', 'btmp*', 'cron*', 'dmesg*', 'lastlog*', 'maillog*', 'mail/*', 'messages*', 'secure*', 'spooler*'],
  ...['tallylog*', 'wtmp*', 'debug*', 'syslog*', 'faillog*', 'firewalld*', 'grubby*', 'xferlog*', 'ntp', 'tuned/tuned.log'],
  ...['apache2/*_log', 'apache2/*_log-*'],
  // services whose logs logrotate knows about
  ...['BackupPC/LOG', 'ceph/*.log', 'chrony/*.log', 'cups/*_log*', 'glusterfs/*glusterd.vol.log', 'glusterfs/glusterfs.log', 'httpd/*log'],
  ...['jetty/jetty-console.log', 'libvirt/libxl/*.log', 'libvirt/libvirtd.log', 'libvirt/lxc/*.log', 'libvirt/qemu/*.log', 'libvirt/uml/*.log'],
  ...['ppp/connect-errors', 'setroubleshoot/*.log', 'squid/*.log'],
  // installers (anaconda, debian-installer), sysstat, display managers, ntp statistics
  ...['anaconda.syslog', 'anaconda/*', 'installer/*', 'sa/*', 'gdm/*', 'lightdm/*', 'ntpstats/*'],
  // subscription manager, the systemd journal, apt and aptitude, exim, ConsoleKit
  ...['rhsm/*', 'journal/*', 'aptitude*', 'apt/*', 'exim4/*', 'ConsoleKit/*'],
]
  .map((p) => `/var/log/${p}`)
  .concat([
    '/var/named/data/named.run',
    '/var/lib/logrotate.status',
    // kickstart files and install logs left in root's home by anaconda
    '/root/install.log',
    '/root/install.log.syslog',
    '/root/anaconda-ks.cfg',
    '/root/anaconda-post.log',
    '/root/initial-setup-ks.cfg',
    '/root/original-ks.cfg',
    // per-user session state of GDM and AccountsService, fingerprint enrolments
    '/var/cache/gdm/*',
    '/var/lib/AccountService/users/*',
    '/var/lib/fprint/*',
    // caches rebuilt on demand
    '/var/cache/fontconfig/*',
    '/var/cache/man/*',
    // OpenPegasus' generated keys and certificates
    ...['cnf', 'crt', 'csr', 'pem', 'srl'].map((ext) => `/etc/Pegasus/*.${ext}`),
  ]);
