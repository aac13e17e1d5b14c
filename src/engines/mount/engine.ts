/**
 * The mount engine (root only): each volume is mounted through a loop device over a FUSE file of
 * the disk, and trimmed (trim.ts). The session makes the FUSE file once per disk, from the
 * writable NBD export, and removes it when disposed.
 */
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { RunContext } from '../../context.js';
import { fullDirError } from '../../host/free-space.js';
import { openNbdFuse } from '../../host/nbd-fuse.js';
import { untrustedMapReason, type VolumePlan } from '../../plan/types.js';
import type { Engine, EngineSession, EngineTarget, VolumeOutcome } from '../engine.js';
import { keptVolume } from '../kept.js';
import { mountPlanFor } from './mount-plan.js';
import { trimByMount } from './trim.js';

/** Programs the mount engine runs: loop devices, mounts, fstrim, ntfs-3g, the FUSE file. */
const MOUNT_TOOLS = ['losetup', 'mount', 'umount', 'fstrim', 'ntfs-3g', 'nbdfuse', 'fusermount3'] as const;
const FUSE_READY_TIMEOUT_MS = 30_000;

export const mountEngine: Engine<'mount'> = {
  id: 'mount',
  tools: MOUNT_TOOLS,
  needsOverlay: true,
  needsFuseFile: true,
  verbs: ['Trim free space in', 'Trimming'],
  does: 'mount',
  accepts(probed, host) {
    const plan = mountPlanFor(probed.fs);
    if (plan.kind === 'unmountable') return { usable: false, reason: plan.reason, blame: 'volume' };
    if (!host.root) return { usable: false, reason: 'the mount engine needs root', blame: 'host' };
    const untrusted = untrustedMapReason(probed);
    const reason = untrusted
      ? `${untrusted}: trimmed through a mount instead, which replays its journal`
      : `${probed.fs.type}: free space trimmed through a mount`;
    return { usable: true, reason };
  },
  open: openMountSession,
};

async function openMountSession(ctx: RunContext, target: EngineTarget): Promise<EngineSession> {
  if (!target.export) throw new Error('the mount engine needs a writable export of the disk');
  const id = `fuse-${randomBytes(4).toString('hex')}`;
  const fuse = await openNbdFuse(ctx, {
    ...target.export,
    path: join(target.workDir, `${id}.img`),
    pidFile: join(target.workDir, `${id}.pid`),
    readOnly: false,
    readyTimeoutMs: FUSE_READY_TIMEOUT_MS,
  });
  target.onProcess?.({ tool: 'nbdfuse', pid: fuse.pid, exited: fuse.exited });
  return {
    run: (plan) => trimVolume(ctx, plan, target, fuse.path),
    [Symbol.asyncDispose]: () => fuse[Symbol.asyncDispose](),
  };
}

async function trimVolume(ctx: RunContext, plan: VolumePlan, target: EngineTarget, fuseFile: string): Promise<VolumeOutcome> {
  const { volume } = plan;
  const outcome = await trimByMount(ctx, {
    fuseFile,
    volume,
    fs: plan.fs,
    workDir: target.workDir,
    // In place, zeros written into a partly used qcow2 cluster would allocate it.
    zeroFill: !target.inPlace,
    keep: plan.protectedRanges.shift(-volume.offsetBytes),
  }).catch(async (err: unknown) => {
    throw (await overlayFull(target, err)) ?? err;
  });
  if (outcome.status !== 'trimmed') {
    // The overlay under the loop device could not grow: a full temp dir, not a broken filesystem.
    const full = await overlayFull(target, new Error(outcome.reason));
    if (full) throw full;
  }
  if (outcome.status === 'trimmed') {
    const how = outcome.method === 'fstrim' ? 'trimmed' : 'zero-filled';
    return { handled: how, reason: outcome.note ? `${plan.reason}; ${outcome.note}` : plan.reason };
  }
  const why = outcome.status === 'no-trim' ? outcome.reason : `cannot be mounted (${outcome.reason})`;
  return keptVolume(ctx, plan, target.inPlace, why);
}

/** NO_SPACE naming the overlay's directory when it has no room left; undefined otherwise (or in place). */
async function overlayFull(target: EngineTarget, cause: unknown): Promise<Error | undefined> {
  return target.overlayDir === undefined ? undefined : fullDirError(target.overlayDir, cause);
}
