/**
 * The appliance engine: guest filesystems are mounted and trimmed inside a libguestfs VM, never
 * in the host's kernel, and without root. It takes the volumes the map engine cannot read (a
 * journal to replay, btrfs, a refused map) and the filesystems sparsify has no driver for but
 * the appliance's kernel knows. One appliance per disk, launched at the first volume planned for
 * it (session.ts); availability is a host fact the planner asks for (availability.ts).
 */
import type { FsType } from '../../fs/types.js';
import { untrustedMapReason } from '../../plan/types.js';
import type { Engine, Verdict } from '../engine.js';
import { canMap } from '../map/free-map.js';
import { mountPlanFor } from '../mount/mount-plan.js';
import { openApplianceSession } from './session.js';

/**
 * What the appliance mounts: the filesystems with a map reader (taken when the map is refused or
 * the journal needs replaying), btrfs, and those known by signature only. Swap and --zero are
 * the map engine's; LUKS needs a key; a volume with no signature is not worth a VM.
 */
const MOUNTABLE: ReadonlySet<FsType> = new Set<FsType>([
  'ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'ntfs', 'vfat',
  'f2fs', 'jfs', 'hfsplus', 'exfat', 'reiserfs', 'nilfs2',
]);

export const applianceEngine: Engine<'appliance'> = {
  id: 'appliance',
  // guestfish is checked by the host fact (availability.ts), with the package to install.
  tools: [],
  needsOverlay: true,
  needsFuseFile: false,
  verbs: ['Trim free space in', 'Trimming'],
  does: 'mount',
  accepts(probed, host): Verdict {
    const { fs, volume } = probed;
    if (!MOUNTABLE.has(fs.type)) {
      const plan = mountPlanFor(fs);
      return { usable: false, reason: plan.kind === 'unmountable' ? plan.reason : `${fs.type}: not handled`, blame: 'volume' };
    }
    if (volume.readOnly) return { usable: false, reason: 'read-only logical volume', blame: 'volume' };
    if (!host.appliance.ok) return { usable: false, reason: host.appliance.reason, blame: 'host' };
    const untrusted = untrustedMapReason(probed);
    if (untrusted) return { usable: true, reason: `${untrusted}: trimmed in the appliance instead, whose kernel replays its journal` };
    const what = canMap(fs.type) ? fs.type : `${fs.type} (no map reader)`;
    return { usable: true, reason: `${what}: free space trimmed in the appliance` };
  },
  open: openApplianceSession,
};
