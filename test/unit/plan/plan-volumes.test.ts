import { describe, expect, it } from 'vitest';
import { hostKernelNotice, planVolumes, planVolumesAskingHost, shouldReadFreeMap, unmatchedNames } from '../../../src/plan/plan-volumes.js';
import { passNeeds } from '../../../src/plan/pass-needs.js';
import type { ProbeResult } from '../../../src/fs/types.js';
import type { Volume } from '../../../src/layout/types.js';
import type { FreeMap } from '../../../src/fs/types.js';
import type { EngineChoice } from '../../../src/options.js';
import { ExtentSet } from '../../../src/disk/extent-set.js';
import { mapEngine } from '../../../src/engines/map/engine.js';
import { refused, type Verdict } from '../../../src/util/verdict.js';

const vol = (n: number): Volume => ({ name: `/dev/sda${n}`, offsetBytes: n * 1e6, sizeBytes: 1e6, kind: 'partition', partitionNumber: n });
/** A host without libguestfs unless a test says otherwise: the mount engine's rules. */
const noAppliance = refused('libguestfs is not installed: install libguestfs-tools');
const input = { ignore: [] as string[], zero: [] as string[], noZero: false, root: true, engine: 'auto' as EngineChoice, appliance: noAppliance as Verdict };

function planOne(fs: ProbeResult, over: Partial<typeof input> = {}, freeMap?: FreeMap) {
  return planVolumes([{ volume: vol(1), fs, ...(freeMap ? { freeMap } : {}) }], { ...input, ...over })[0]!;
}

const trusted: FreeMap = { trusted: true, free: ExtentSet.of(4096, 8192), unitBytes: 4096, counterFreeBytes: 8192 };
const untrusted: FreeMap = { trusted: false, reason: 'the journal needs recovery' };

describe('planVolumes', () => {
  it('mounts the filesystems the kernel or ntfs-3g can trim', () => {
    for (const type of ['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'ntfs', 'vfat'] as const) {
      expect(planOne({ type }).action).toBe('mount');
    }
  });

  it('keeps the swap header, but leaves a hibernation image alone', () => {
    expect(planOne({ type: 'swap' }).action).toBe('swap');
    const hib = planOne({ type: 'swap', hibernated: true });
    expect(hib.action).toBe('keep');
    expect(hib.reason).toMatch(/hibernation/);
  });

  it('keeps a hibernated NTFS (Windows hibernated or Fast Startup) from the typed field, never reading its map', () => {
    const fs: ProbeResult = { type: 'ntfs', hibernated: true };
    for (const over of [{}, { root: false }, { engine: 'map' as const }, { engine: 'mount' as const }]) {
      expect(planOne(fs, over)).toMatchObject({
        action: 'keep',
        reason: 'ntfs holds a Windows hibernation image (hibernated, or shut down with Fast Startup)',
        warn: true,
      });
    }
    // Even a map that claims to be trusted is not used.
    expect(planOne(fs, {}, trusted).action).toBe('keep');
    expect(shouldReadFreeMap({ volume: vol(1), fs }, input)).toBe(false);
  });

  it('a dirty XFS log: its map is not read; mounted to replay it, or kept, saying so from the typed field', () => {
    const fs: ProbeResult = { type: 'xfs', dirty: true };
    const why = 'xfs map not trusted (xfs log is dirty (not cleanly unmounted): it needs recovery; mount the filesystem once, or run xfs_repair)';
    expect(planOne(fs)).toMatchObject({ action: 'mount', reason: `${why}: trimmed through a mount instead, which replays its journal` });
    expect(planOne(fs, { root: false })).toMatchObject({ action: 'keep', reason: why, warn: true });
    expect(planOne(fs, { engine: 'map' })).toMatchObject({ action: 'keep', reason: why, warn: true });
    expect(planOne(fs, { root: false }, trusted)).toMatchObject({ action: 'keep', reason: why });
    expect(shouldReadFreeMap({ volume: vol(1), fs }, input)).toBe(false);
  });

  it('a dirty NTFS or ext: the same rule, in their drivers\' words', () => {
    expect(planOne({ type: 'ntfs', dirty: true }, { root: false }).reason).toMatch(/^ntfs map not trusted \(Windows did not shut down cleanly/);
    expect(planOne({ type: 'ext4', dirty: true }, { engine: 'map' }).reason).toBe('ext4 map not trusted (the journal needs recovery (needs_recovery is set))');
  });

  it('copies unknown, LUKS and LVM PVs as they are, saying why', () => {
    expect(planOne({ type: 'unknown' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/no filesystem/) });
    expect(planOne({ type: 'luks' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/LUKS/) });
    expect(planOne({ type: 'lvm-pv' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/LVM/) });
  });

  it('--ignore wins over --zero, --zero over the filesystem, --no-zero keeps everything', () => {
    expect(planOne({ type: 'ext4' }, { ignore: ['/dev/sda1'], zero: ['/dev/sda1'] }).action).toBe('keep');
    expect(planOne({ type: 'ext4' }, { zero: ['/dev/sda1'] }).action).toBe('zero');
    expect(planOne({ type: 'swap' }, { noZero: true }).action).toBe('keep');
    expect(planOne({ type: 'ext4' }, { noZero: true, zero: ['/dev/sda1'] }).action).toBe('zero');
  });

  it('without root and without libguestfs nothing is mounted: the reason names the package to install', () => {
    expect(planOne({ type: 'ext4' }, { root: false })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/install libguestfs-tools/) });
  });

  it('names given to --ignore/--zero that match nothing are reported', () => {
    expect(unmatchedNames(['/dev/sda1', '/dev/sdb9'], [vol(1)])).toEqual(['/dev/sdb9']);
  });

  it('a trusted free map makes it a map volume, unless --engine mount', () => {
    expect(planOne({ type: 'ext4' }, {}, trusted)).toMatchObject({ action: 'map', freeMap: trusted });
    expect(planOne({ type: 'vfat' }, { root: false }, trusted).action).toBe('map');
    expect(planOne({ type: 'swap' }, {}, trusted).action).toBe('map');
    expect(planOne({ type: 'ext4' }, { engine: 'mount' }, trusted).action).toBe('mount');
    expect(planOne({ type: 'swap' }, { engine: 'mount' }).action).toBe('swap');
  });

  it('an untrusted map is never used: the mount engine replays the journal, or the volume is left as it is', () => {
    const mounted = planOne({ type: 'ext4' }, {}, untrusted);
    expect(mounted.action).toBe('mount');
    expect(mounted.reason).toMatch(/journal needs recovery.*trimmed through a mount instead/);
    const kept = planOne({ type: 'ext4' }, { root: false }, untrusted);
    expect(kept).toMatchObject({ action: 'keep', warn: true });
    expect(kept.reason).toMatch(/journal needs recovery/);
    expect(planOne({ type: 'ext4' }, { engine: 'map' }, untrusted).action).toBe('keep');
    expect(planOne({ type: 'swap' }, {}, { trusted: false, reason: 'old SWAP-SPACE format' }).action).toBe('keep');
  });

  it('--engine map never mounts', () => {
    expect(planOne({ type: 'btrfs' }, { engine: 'map' })).toMatchObject({ action: 'keep', reason: expect.stringMatching(/--engine map/) });
  });

  it("an LVM PV's free extents are used whatever the engine", () => {
    expect(planOne({ type: 'lvm-pv' }, { engine: 'mount' }, trusted)).toMatchObject({ action: 'map', reason: expect.stringMatching(/LVM/) });
    expect(planOne({ type: 'lvm-pv' }, {}, untrusted)).toMatchObject({ action: 'keep', warn: true });
  });
});

/** Every action and reason the planner can give, one row each, with the engine that runs it. */
describe('planVolumes: the whole table', () => {
  const rows: [string, ProbeResult, Partial<typeof input>, FreeMap | undefined, { action: string; engine?: string; reason: string; warn: boolean }][] = [
    ['--ignore', { type: 'ext4' }, { ignore: ['/dev/sda1'] }, trusted, { action: 'keep', reason: 'ignored (--ignore)', warn: false }],
    ['--zero', { type: 'ext4' }, { zero: ['/dev/sda1'] }, undefined, { action: 'zero', engine: 'map', reason: 'zeroed as asked (--zero)', warn: false }],
    ['--no-zero', { type: 'ext4' }, { noZero: true }, undefined, { action: 'keep', reason: 'no filesystem pass (--no-zero)', warn: false }],
    ['hibernated swap', { type: 'swap', hibernated: true }, {}, undefined, { action: 'keep', reason: 'swap holds a hibernation image', warn: true }],
    ['hibernated NTFS', { type: 'ntfs', hibernated: true }, {}, undefined, { action: 'keep', reason: 'ntfs holds a Windows hibernation image (hibernated, or shut down with Fast Startup)', warn: true }],
    [
      'dirty XFS, mounted',
      { type: 'xfs', dirty: true },
      {},
      undefined,
      { action: 'mount', engine: 'mount', reason: 'xfs map not trusted (xfs log is dirty (not cleanly unmounted): it needs recovery; mount the filesystem once, or run xfs_repair): trimmed through a mount instead, which replays its journal', warn: false },
    ],
    ['dirty XFS, no root', { type: 'xfs', dirty: true }, { root: false }, undefined, { action: 'keep', reason: 'xfs map not trusted (xfs log is dirty (not cleanly unmounted): it needs recovery; mount the filesystem once, or run xfs_repair)', warn: true }],
    ['trusted map', { type: 'xfs' }, {}, trusted, { action: 'map', engine: 'map', reason: 'xfs: free blocks from its own allocation map', warn: false }],
    ['LVM PV', { type: 'lvm-pv' }, { engine: 'mount' }, trusted, { action: 'map', engine: 'map', reason: 'LVM: extents no logical volume uses', warn: false }],
    ['swap', { type: 'swap' }, {}, undefined, { action: 'swap', engine: 'map', reason: 'swap: header kept, the rest zeroed', warn: false }],
    ['old swap', { type: 'swap' }, {}, { trusted: false, reason: 'old' }, { action: 'keep', reason: 'swap map not trusted (old)', warn: true }],
    ['mount', { type: 'btrfs' }, {}, undefined, { action: 'mount', engine: 'mount', reason: 'btrfs: free space trimmed through a mount', warn: false }],
    [
      'untrusted, mounted',
      { type: 'ext4', dirty: true },
      {},
      untrusted,
      { action: 'mount', engine: 'mount', reason: 'ext4 map not trusted (the journal needs recovery (needs_recovery is set)): trimmed through a mount instead, which replays its journal', warn: false },
    ],
    ['untrusted, no root', { type: 'ext4' }, { root: false }, untrusted, { action: 'keep', reason: 'ext4 map not trusted (the journal needs recovery)', warn: true }],
    ['no root', { type: 'ntfs' }, { root: false }, undefined, { action: 'keep', reason: noAppliance.reason, warn: true }],
    ['--engine map', { type: 'vfat' }, { engine: 'map' }, undefined, { action: 'keep', reason: 'vfat: no trusted map, and --engine map does not mount', warn: true }],
    ['--engine map, no root', { type: 'vfat' }, { engine: 'map', root: false }, undefined, { action: 'keep', reason: 'vfat: no trusted map, and --engine map does not mount', warn: true }],
    ['--engine mount', { type: 'ext4' }, { engine: 'mount' }, undefined, { action: 'mount', engine: 'mount', reason: 'ext4: free space trimmed through a mount', warn: false }],
    ['LUKS', { type: 'luks' }, {}, undefined, { action: 'keep', reason: 'encrypted (LUKS)', warn: true }],
    ['PV without metadata', { type: 'lvm-pv' }, {}, undefined, { action: 'keep', reason: 'LVM physical volume without volume group metadata', warn: true }],
    ['unknown', { type: 'unknown' }, { engine: 'map' }, undefined, { action: 'keep', reason: 'no filesystem recognised', warn: true }],
    ['--ignore and --no-zero', { type: 'swap' }, { ignore: ['/dev/sda1'], noZero: true }, undefined, { action: 'keep', reason: 'ignored (--ignore)', warn: false }],
    ['--zero, no root, --engine mount', { type: 'luks' }, { zero: ['/dev/sda1'], root: false, engine: 'mount' }, undefined, { action: 'zero', engine: 'map', reason: 'zeroed as asked (--zero)', warn: false }],
    ['--no-zero over a hibernation image', { type: 'swap', hibernated: true }, { noZero: true }, undefined, { action: 'keep', reason: 'no filesystem pass (--no-zero)', warn: false }],
    ['hibernated NTFS, trusted map', { type: 'ntfs', hibernated: true }, {}, trusted, { action: 'keep', reason: 'ntfs holds a Windows hibernation image (hibernated, or shut down with Fast Startup)', warn: true }],
    ['swap, no root', { type: 'swap' }, { root: false }, undefined, { action: 'swap', engine: 'map', reason: 'swap: header kept, the rest zeroed', warn: false }],
    ['swap, --engine mount', { type: 'swap' }, { engine: 'mount' }, undefined, { action: 'swap', engine: 'map', reason: 'swap: header kept, the rest zeroed', warn: false }],
    ['untrusted, --engine map', { type: 'ext4' }, { engine: 'map' }, untrusted, { action: 'keep', reason: 'ext4 map not trusted (the journal needs recovery)', warn: true }],
    ['untrusted PV', { type: 'lvm-pv' }, {}, untrusted, { action: 'keep', reason: 'lvm-pv map not trusted (the journal needs recovery)', warn: true }],
    ['trusted map, --engine mount, no root', { type: 'ext4' }, { engine: 'mount', root: false }, trusted, { action: 'keep', reason: 'the mount engine needs root', warn: true }],
    ['LUKS, --engine map', { type: 'luks' }, { engine: 'map' }, undefined, { action: 'keep', reason: 'encrypted (LUKS)', warn: true }],
  ];
  it.each(rows)('%s', (_, fs, over, freeMap, expected) => {
    const plan = planOne(fs, over, freeMap);
    expect({ action: plan.action, engine: plan.engine, reason: plan.reason, warn: plan.warn }).toEqual({ engine: undefined, ...expected });
  });
});

/**
 * --engine auto|map|mount, as root or not, over an ext4 with no map, a trusted one and a refused
 * one: the action and reason of each of the 18 cases. Swap and an LVM PV's free extents go to the
 * map engine in every case.
 */
describe('planVolumes: --engine by root by free map', () => {
  const MOUNTED = 'ext4: free space trimmed through a mount';
  const MAPPED = 'ext4: free blocks from its own allocation map';
  const REFUSED = 'ext4 map not trusted (the journal needs recovery)';
  const REPLAYED = `${REFUSED}: trimmed through a mount instead, which replays its journal`;
  const NEEDS_ROOT = 'the mount engine needs root';
  const NO_MOUNT = 'ext4: no trusted map, and --engine map does not mount';
  const maps = { none: undefined, trusted, untrusted };
  const grid: [keyof typeof maps, EngineChoice, boolean, string, string][] = [
    ['none', 'auto', true, 'mount', MOUNTED],
    ['none', 'auto', false, 'keep', noAppliance.reason],
    ['none', 'map', true, 'keep', NO_MOUNT],
    ['none', 'map', false, 'keep', NO_MOUNT],
    ['none', 'mount', true, 'mount', MOUNTED],
    ['none', 'mount', false, 'keep', NEEDS_ROOT],
    ['trusted', 'auto', true, 'map', MAPPED],
    ['trusted', 'auto', false, 'map', MAPPED],
    ['trusted', 'map', true, 'map', MAPPED],
    ['trusted', 'map', false, 'map', MAPPED],
    ['trusted', 'mount', true, 'mount', MOUNTED],
    ['trusted', 'mount', false, 'keep', NEEDS_ROOT],
    ['untrusted', 'auto', true, 'mount', REPLAYED],
    ['untrusted', 'auto', false, 'keep', REFUSED],
    ['untrusted', 'map', true, 'keep', REFUSED],
    ['untrusted', 'map', false, 'keep', REFUSED],
    ['untrusted', 'mount', true, 'mount', REPLAYED],
    ['untrusted', 'mount', false, 'keep', REFUSED],
  ];
  it.each(grid)('ext4, %s map, --engine %s, root %s: %s', (map, engine, root, action, reason) => {
    const plan = planOne({ type: 'ext4' }, { engine, root }, maps[map]);
    expect({ action: plan.action, engine: plan.engine, reason: plan.reason, warn: plan.warn }).toEqual({
      action,
      engine: action === 'keep' ? undefined : action,
      reason,
      warn: action === 'keep',
    });
    expect(plan.freeMap).toBe(action === 'map' ? trusted : undefined);
  });

  it.each(['auto', 'map', 'mount'] as const)('--engine %s: swap and a PV go to the map engine, root or not', (engine) => {
    for (const root of [true, false]) {
      expect(planOne({ type: 'swap' }, { engine, root })).toMatchObject({ action: 'swap', engine: 'map' });
      expect(planOne({ type: 'lvm-pv' }, { engine, root }, trusted)).toMatchObject({ action: 'map', engine: 'map', reason: 'LVM: extents no logical volume uses' });
    }
  });
});

describe('planVolumes: beyond one volume', () => {
  it('with no engine but the map engine, a volume it cannot take is not handled', () => {
    const plans = planVolumes([{ volume: vol(1), fs: { type: 'ext4' } }, { volume: vol(2), fs: { type: 'xfs' }, freeMap: trusted }], input, ExtentSet.empty, [mapEngine]);
    expect(plans.map((p) => [p.action, p.reason, p.warn])).toEqual([
      ['keep', 'ext4: not handled', true],
      ['map', 'xfs: free blocks from its own allocation map', false],
    ]);
  });

  it('each plan carries only the protected ranges inside its own volume', () => {
    // One range inside sda1, one across the sda1/sda2 boundary, one beyond every volume.
    const guarded = ExtentSet.of(1e6 + 512, 512).union(ExtentSet.of(2e6 - 100, 200)).union(ExtentSet.of(9e6, 512));
    const plans = planVolumes([1, 2].map((n) => ({ volume: vol(n), fs: { type: 'ext4' as const } })), input, guarded);
    expect(plans.map((p) => p.protectedRanges.ranges.map((r) => [r.start, r.end]))).toEqual([
      [
        [1e6 + 512, 1e6 + 1024],
        [2e6 - 100, 2e6],
      ],
      [[2e6, 2e6 + 100]],
    ]);
  });

  it('an ignored volume group: its PV and LVs (given as ignored names) are left alone, silently, and need nothing', () => {
    const lv = (name: string, n: number): Volume => ({ name, offsetBytes: n * 1e6, sizeBytes: 1e6, kind: 'logical-volume' });
    const probed = [
      { volume: vol(1), fs: { type: 'lvm-pv' as const }, freeMap: trusted },
      { volume: lv('/dev/VG/root', 2), fs: { type: 'ext4' as const } },
      { volume: lv('/dev/VG/swap', 3), fs: { type: 'swap' as const } },
      { volume: vol(4), fs: { type: 'xfs' as const }, freeMap: trusted },
    ];
    // examineDisk turns --ignore VG into the names of the group's PV and LVs.
    const ignore = ['VG', '/dev/sda1', '/dev/VG/root', '/dev/VG/swap'];
    const plans = planVolumes(probed, { ...input, ignore, zero: ['/dev/VG/swap'] });
    expect(plans.map((p) => [p.volume.name, p.action, p.reason, p.warn])).toEqual([
      ['/dev/sda1', 'keep', 'ignored (--ignore)', false],
      ['/dev/VG/root', 'keep', 'ignored (--ignore)', false],
      ['/dev/VG/swap', 'keep', 'ignored (--ignore)', false],
      ['/dev/sda4', 'map', 'xfs: free blocks from its own allocation map', false],
    ]);
    expect(passNeeds(plans)).toEqual({ engines: ['map'], tools: [], overlay: false, overlayVolumes: 0 });
    expect(probed.map((p) => shouldReadFreeMap({ volume: p.volume, fs: p.fs }, input, ignore))).toEqual([false, false, false, true]);
  });
});

describe('shouldReadFreeMap', () => {
  const probed = { volume: vol(1), fs: { type: 'ext4' as const } };
  it('reads maps only where the map engine may take the volume and the user did not decide', () => {
    expect(shouldReadFreeMap(probed, input)).toBe(true);
    expect(shouldReadFreeMap(probed, { ...input, engine: 'map', root: false })).toBe(true);
    expect(shouldReadFreeMap(probed, { ...input, engine: 'mount' })).toBe(false);
    expect(shouldReadFreeMap(probed, { ...input, noZero: true })).toBe(false);
    expect(shouldReadFreeMap(probed, { ...input, zero: ['/dev/sda1'] })).toBe(false);
    expect(shouldReadFreeMap(probed, { ...input, ignore: ['/dev/sda1'] })).toBe(false);
    // The volumes of an ignored volume group come as the extra list.
    expect(shouldReadFreeMap(probed, input, ['/dev/sda1'])).toBe(false);
    expect(shouldReadFreeMap({ ...probed, freeMap: trusted }, input)).toBe(false);
  });
});

describe('passNeeds', () => {
  const plans = (over: Partial<typeof input>, ...types: ProbeResult['type'][]) =>
    planVolumes(types.map((type, i) => ({ volume: vol(i + 1), fs: { type }, ...(type === 'xfs' ? { freeMap: trusted } : {}) })), { ...input, ...over });
  const MOUNT_TOOLS = ['losetup', 'mount', 'umount', 'fstrim', 'ntfs-3g', 'nbdfuse', 'fusermount3'];

  it('asks for the mount tools and an overlay only when some volume is mounted', () => {
    expect(passNeeds(plans({}, 'xfs', 'ext4', 'btrfs', 'swap'))).toEqual({ engines: ['map', 'mount'], tools: MOUNT_TOOLS, overlay: true, overlayVolumes: 2 });
    expect(passNeeds(plans({}, 'xfs', 'swap'))).toEqual({ engines: ['map'], tools: [], overlay: false, overlayVolumes: 0 });
  });

  it('--engine map as root asks for no mount tool (ntfs-3g, nbdfuse)', () => {
    expect(passNeeds(plans({ engine: 'map' }, 'xfs', 'ext4', 'ntfs'))).toMatchObject({ tools: [], overlay: false });
  });

  it('--engine mount, and auto without root', () => {
    expect(passNeeds(plans({ engine: 'mount' }, 'xfs'))).toMatchObject({ engines: ['mount'], tools: MOUNT_TOOLS, overlayVolumes: 1 });
    expect(passNeeds(plans({ root: false }, 'ext4', 'ntfs'))).toEqual({ engines: [], tools: [], overlay: false, overlayVolumes: 0 });
    expect(passNeeds(plans({ noZero: true }, 'ext4'))).toMatchObject({ engines: [], tools: [] });
  });
});

describe('planVolumes: the appliance', () => {
  const withAppliance = { appliance: { ok: true } as const };
  const probedAs = (type: ProbeResult['type'], freeMap?: FreeMap) => ({ volume: vol(1), fs: { type }, ...(freeMap ? { freeMap } : {}) });

  it('under auto, root or not, takes what the map engine cannot: before the mount engine', () => {
    for (const root of [true, false]) {
      const over = { ...withAppliance, root };
      expect(planOne({ type: 'btrfs' }, over)).toMatchObject({ action: 'appliance', engine: 'appliance', reason: 'btrfs (no map reader): free space trimmed in the appliance', warn: false });
      expect(planOne({ type: 'ext4' }, over, untrusted)).toMatchObject({
        action: 'appliance',
        reason: 'ext4 map not trusted (the journal needs recovery): trimmed in the appliance instead, whose kernel replays its journal',
      });
      expect(planOne({ type: 'xfs', dirty: true }, over).action).toBe('appliance');
      expect(planOne({ type: 'ext4' }, over, trusted).action).toBe('map');
      expect(planOne({ type: 'swap' }, over).action).toBe('swap');
    }
  });

  it('takes the filesystems known by signature only, never a volume with no signature, LUKS or a read-only LV', () => {
    for (const type of ['f2fs', 'jfs', 'hfsplus', 'exfat', 'reiserfs', 'nilfs2'] as const) {
      expect(planOne({ type }, withAppliance)).toMatchObject({ action: 'appliance', reason: `${type} (no map reader): free space trimmed in the appliance` });
    }
    expect(planOne({ type: 'unknown' }, withAppliance)).toMatchObject({ action: 'keep', reason: 'no filesystem recognised', warn: true });
    expect(planOne({ type: 'luks' }, withAppliance)).toMatchObject({ action: 'keep', reason: 'encrypted (LUKS)' });
    const readOnlyLv = { name: '/dev/VG/ro', offsetBytes: 1e6, sizeBytes: 1e6, kind: 'logical-volume' as const, readOnly: true };
    const [plan] = planVolumes([{ volume: readOnlyLv, fs: { type: 'ext4' }, freeMap: untrusted }], { ...input, ...withAppliance, root: false });
    expect(plan).toMatchObject({ action: 'keep', reason: 'ext4 map not trusted (the journal needs recovery)' });
    const [clean] = planVolumes([{ volume: readOnlyLv, fs: { type: 'btrfs' } }], { ...input, ...withAppliance, root: false });
    expect(clean).toMatchObject({ action: 'keep', reason: 'read-only logical volume' });
  });

  it('--engine appliance takes every mountable volume, mapped or not; --engine mount and map do not use it', () => {
    expect(planOne({ type: 'ext4' }, { ...withAppliance, engine: 'appliance' }, trusted)).toMatchObject({ action: 'appliance', reason: 'ext4: free space trimmed in the appliance' });
    expect(planOne({ type: 'swap' }, { ...withAppliance, engine: 'appliance' }).action).toBe('swap');
    expect(planOne({ type: 'btrfs' }, { ...withAppliance, engine: 'mount' }).action).toBe('mount');
    expect(planOne({ type: 'btrfs' }, { ...withAppliance, engine: 'map' })).toMatchObject({ action: 'keep', reason: 'btrfs: no trusted map, and --engine map does not mount' });
    expect(planOne({ type: 'btrfs' }, { ...withAppliance, engine: 'mount', root: false })).toMatchObject({ action: 'keep', reason: 'the mount engine needs root' });
  });

  it('asks whether the appliance runs only when a volume would go to it, and plans again with the answer', async () => {
    let asked = 0;
    const answer = (verdict: Verdict) => () => (asked++, Promise.resolve(verdict));
    const mapped = await planVolumesAskingHost([probedAs('ext4', trusted)], { ...input, appliance: answer({ ok: true }) });
    expect([mapped[0]!.action, asked]).toEqual(['map', 0]);
    const present = await planVolumesAskingHost([probedAs('btrfs')], { ...input, appliance: answer({ ok: true }) });
    expect([present[0]!.action, asked]).toEqual(['appliance', 1]);
    const asRoot = await planVolumesAskingHost([probedAs('btrfs')], { ...input, appliance: answer(noAppliance) });
    expect(asRoot[0]!.action).toBe('mount');
    const rootless = await planVolumesAskingHost([probedAs('btrfs')], { ...input, root: false, appliance: answer(noAppliance) });
    expect(rootless[0]).toMatchObject({ action: 'keep', reason: noAppliance.reason, warn: true });
    await expect(planVolumesAskingHost([probedAs('btrfs')], { ...input, engine: 'appliance', appliance: answer(noAppliance) })).rejects.toMatchObject({
      code: 'TOOL_MISSING',
      message: `--engine appliance: ${noAppliance.reason}`,
    });
  });

  it('says once when auto mounts guest data in the host kernel, naming the volumes; never for --engine mount', () => {
    const plans = planVolumes([1, 2, 3].map((n) => ({ volume: vol(n), fs: { type: n === 2 ? ('swap' as const) : ('btrfs' as const) } })), input);
    expect(hostKernelNotice(plans, input)).toBe(
      'no libguestfs appliance: guest data of /dev/sda1, /dev/sda3 is mounted in the host kernel (install libguestfs-tools to keep it in a VM)',
    );
    expect(hostKernelNotice(plans, { engine: 'mount' })).toBeUndefined();
    expect(hostKernelNotice(planVolumes([probedAs('btrfs')], { ...input, ...withAppliance }), input)).toBeUndefined();
  });
});
