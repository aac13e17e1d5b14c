/**
 * The ssh-hostkeys operation's last step: gives the guest a way to make new host keys at first
 * boot when it has none (see decide.ts), or warns that it will boot without them. Runs on the
 * guest's filesystems mounted in the appliance; a dry run decides the same way and writes nothing.
 *
 * Paths: the unit directory is resolved inside the guest first (realpath, chrooted) and written
 * to only when it is a real directory, as the operations' guest-paths.ts does for what it removes.
 */
import type { Appliance } from '../../engines/appliance/guestfish.js';
import type { Change } from '../operations/types.js';
import { diskBytes, resolveDir } from '../operations/guest-paths.js';
import { decideHostKeyBoot } from './decide.js';
import { probeSshBoot } from './facts.js';
import { UNIT_PATH, WANTS_DIR, WANTS_LINK, firstbootUnitText } from './unit.js';

export interface FirstbootOutcome {
  readonly changes: readonly Change[];
  readonly warnings: readonly string[];
}

/** Decides from the mounted guest and, unless `dryRun`, adds and enables the first-boot unit. */
export async function ensureHostKeysAtBoot(g: Appliance, dryRun: boolean): Promise<FirstbootOutcome> {
  const decision = decideHostKeyBoot(await probeSshBoot(g));
  if (decision.kind === 'nothing') return { changes: [], warnings: [] };
  if (decision.kind === 'warn') return { changes: [], warnings: [decision.warning] };
  const changes: Change[] = [
    { path: UNIT_PATH, change: 'added', detail: `first-boot unit that runs ${decision.sshKeygen} -A: ${decision.reason}` },
    { path: WANTS_LINK, change: 'added', detail: 'enables it (what systemctl enable makes)' },
  ];
  if (dryRun) return { changes, warnings: [] };
  const unitDir = await resolveDir(g, '/etc/systemd/system');
  if (unitDir !== '/etc/systemd/system') {
    return { changes: [], warnings: [`/etc/systemd/system is not a directory of the guest: no first-boot unit added, the template will boot without SSH host keys`] };
  }
  await g.run('mkdir-p', WANTS_DIR);
  if ((await resolveDir(g, WANTS_DIR)) !== WANTS_DIR) {
    return { changes: [], warnings: [`${WANTS_DIR} is not a directory of the guest: no first-boot unit added, the template will boot without SSH host keys`] };
  }
  await g.run('write', UNIT_PATH, firstbootUnitText(decision.sshKeygen));
  await g.run('chmod', '0644', UNIT_PATH);
  await g.run('ln-sf', UNIT_PATH, WANTS_LINK);
  // The space the unit now takes (du), so the report can set it against what was removed.
  const bytes = await diskBytes(g, UNIT_PATH);
  return { changes: changes.map((c) => (c.path === UNIT_PATH && bytes !== undefined ? { ...c, bytes } : c)), warnings: [] };
}
