/**
 * What a guest has that decides whether its SSH server will find host keys at boot once the
 * ssh-hostkeys operation has removed them: sshd, the init, ssh-keygen, and whatever in it makes
 * missing keys at boot. Read-only: every look goes through the appliance, chrooted in the guest
 * (`exists`, `realpath`, `cat` resolve absolute symlinks inside the guest's tree).
 *
 * What regenerates missing host keys at boot on the common distros (checked in their packages):
 * - Fedora, RHEL and derivatives: sshd-keygen@.service, pulled in by sshd.service through
 *   sshd-keygen.target (RHEL 7: sshd-keygen.service).
 * - Arch: sshdgenkeys.service (`ssh-keygen -A`), wanted by sshd.service.
 * - openSUSE: sshd.service runs /usr/sbin/sshd-gen-keys-start in ExecStartPre.
 * - A unit (or a drop-in) of ssh/sshd with `ssh-keygen` in an Exec line, as some images add.
 * - cloud-init, unless disabled: its ssh module makes new keys on an instance's first boot.
 * - Without systemd: an init script of sshd that runs ssh-keygen (Alpine's and Gentoo's OpenRC
 *   scripts, FreeBSD's and Slackware's rc scripts).
 * Debian and Ubuntu have none: openssh-server's postinst makes the keys once, at install time,
 * and ssh.service only tests its configuration (`sshd -t`), which fails without keys.
 */
import type { Appliance } from '../../engines/appliance/guestfish.js';
import { FIRSTBOOT_UNIT } from './unit.js';

export interface SshBootFacts {
  /** The guest's sshd, or undefined when it has none. */
  readonly sshd?: string;
  /** systemd is the guest's init (/sbin/init is systemd). */
  readonly systemd: boolean;
  /** The guest's ssh-keygen, or undefined. */
  readonly sshKeygen?: string;
  /** What in the guest makes missing host keys at boot, each as "what (path)"; empty when nothing does. */
  readonly regenerators: readonly string[];
}

const SSHD_PATHS = ['/usr/sbin/sshd', '/usr/bin/sshd', '/sbin/sshd', '/usr/local/sbin/sshd'];
const KEYGEN_PATHS = ['/usr/bin/ssh-keygen', '/bin/ssh-keygen', '/usr/local/bin/ssh-keygen'];
/** systemd's unit directories, the administrator's first (its file wins over the vendor's). */
export const UNIT_DIRS = ['/etc/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
/** Units whose whole purpose is making host keys; sparsify's own first-boot unit is one too. */
const KEYGEN_UNITS = ['sshd-keygen@.service', 'sshd-keygen.target', 'sshd-keygen.service', 'sshdgenkeys.service', FIRSTBOOT_UNIT];
const SSH_UNITS = ['ssh.service', 'sshd.service', 'ssh@.service', 'sshd@.service'];
const INIT_SCRIPTS = ['/etc/init.d/sshd', '/etc/init.d/ssh', '/etc/rc.d/sshd', '/etc/rc.d/rc.sshd', '/etc/rc.d/init.d/sshd'];
/** An Exec line of a unit that makes keys. */
const EXEC_KEYGEN = /^\s*Exec[A-Za-z]*\s*=.*(ssh-keygen|sshd-keygen|sshd-gen-keys)/m;
/** Larger than any unit file or init script: anything bigger is not read. */
const MAX_TEXT_BYTES = 256 * 1024;

const isTrue = (reply: string): boolean => reply.trim() === 'true';
const exists = async (g: Appliance, path: string): Promise<boolean> => isTrue(await g.run('exists', path).catch(() => 'false'));

async function firstExisting(g: Appliance, paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) if (await exists(g, path)) return path;
  return undefined;
}

/** A small text file's content, or undefined (missing, a directory, too big, unreadable). */
async function readText(g: Appliance, path: string): Promise<string | undefined> {
  try {
    if (!isTrue(await g.run('is-file', path, 'followsymlinks:true'))) return undefined;
    if (Number((await g.run('filesize', path)).trim()) > MAX_TEXT_BYTES) return undefined;
    return await g.run('cat', path);
  } catch {
    return undefined;
  }
}

/** A unit masked by the administrator: a symlink to /dev/null in /etc/systemd/system. */
async function masked(g: Appliance, unit: string): Promise<boolean> {
  const path = `/etc/systemd/system/${unit}`;
  if (!isTrue(await g.run('is-symlink', path).catch(() => 'false'))) return false;
  return (await g.run('readlink', path).catch(() => '')).trim() === '/dev/null';
}

/** Reads the facts from a guest whose filesystems are mounted at its mount points. */
export async function probeSshBoot(g: Appliance): Promise<SshBootFacts> {
  const sshd = await firstExisting(g, SSHD_PATHS);
  const init = await g.run('realpath', '/sbin/init').catch(() => '');
  const systemd = /\/systemd$/.test(init.trim());
  const sshKeygen = await firstExisting(g, KEYGEN_PATHS);
  const regenerators = sshd === undefined ? [] : systemd ? await systemdRegenerators(g) : await initScriptRegenerators(g);
  if (sshd !== undefined && (await exists(g, '/usr/bin/cloud-init')) && !(await exists(g, '/etc/cloud/cloud-init.disabled'))) {
    regenerators.push('cloud-init (/usr/bin/cloud-init)');
  }
  return { ...(sshd ? { sshd } : {}), systemd, ...(sshKeygen ? { sshKeygen } : {}), regenerators };
}

async function systemdRegenerators(g: Appliance): Promise<string[]> {
  const found: string[] = [];
  for (const unit of KEYGEN_UNITS) {
    if (await masked(g, unit)) continue;
    const path = await firstExisting(g, UNIT_DIRS.map((dir) => `${dir}/${unit}`));
    if (path) found.push(`${unit} (${path})`);
  }
  for (const unit of SSH_UNITS) {
    // The unit's file (the first directory that has it) and every drop-in of it.
    const file = await firstExisting(g, UNIT_DIRS.map((dir) => `${dir}/${unit}`));
    const dropIns: string[] = [];
    for (const dir of UNIT_DIRS) {
      const listed = await g.run('glob-expand', `${dir}/${unit}.d/*.conf`).catch(() => '');
      dropIns.push(...listed.split('\n').filter((l) => l !== ''));
    }
    for (const path of [...(file ? [file] : []), ...dropIns]) {
      const text = await readText(g, path);
      if (text !== undefined && EXEC_KEYGEN.test(text)) found.push(`an Exec line of ${unit} (${path})`);
    }
  }
  return found;
}

async function initScriptRegenerators(g: Appliance): Promise<string[]> {
  const found: string[] = [];
  for (const path of INIT_SCRIPTS) {
    const text = await readText(g, path);
    if (text !== undefined && /ssh-keygen|sshd-gen-keys/.test(text)) found.push(`the init script ${path}`);
  }
  return found;
}
