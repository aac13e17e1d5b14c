/**
 * A crash-consistent snapshot: a disk image copied while its ext4 and xfs were mounted and being
 * written, as a backup tool copies a running VM's disk. Their journals need replaying, so their
 * on-disk maps are stale; the truth an output must hold is the files after the kernel replayed
 * them. Needs root (loop devices, kernel mounts). Used by the tests and by scripts/bench.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Manifest, ManifestVolume } from './verify.js';

const run = (file: string, args: string[]): string => execFileSync(file, args, { encoding: 'utf8' });

/** The filesystems the snapshot leaves dirty (written while mounted); others are left as built. */
const DIRTIED: readonly string[] = ['ext4', 'xfs'];

/** A volume of the image, where it lies. */
export type SnapshotVolume = Pick<ManifestVolume, 'name' | 'fs' | 'offsetBytes' | 'sizeBytes'>;

/** The snapshot and what its dirty volumes hold once their journals are replayed. */
export interface CrashSnapshot {
  readonly path: string;
  /** The volumes copied while mounted and written (ext4 and xfs). */
  readonly dirty: readonly SnapshotVolume[];
  /** Per dirty volume name: every regular file after replay → sha256. */
  readonly truth: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

/** Every regular file under `root` → sha256, keyed by path relative to root. */
export async function hashTree(root: string, dir = root, out: Record<string, string> = {}): Promise<Record<string, string>> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await hashTree(root, path, out);
    else if (entry.isFile()) out[relative(root, path)] = createHash('sha256').update(await readFile(path)).digest('hex');
  }
  return out;
}

function attachLoop(image: string, vol: SnapshotVolume, readOnly: boolean): string {
  return run('losetup', ['--find', '--show', ...(readOnly ? ['--read-only'] : []), '--offset', String(vol.offsetBytes), '--sizelimit', String(vol.sizeBytes), image]).trim();
}

/**
 * Mounts one volume of a raw image at `mnt`, calls fn, unmounts. Read-write replays a dirty
 * journal; read-only mounts without replaying (noload), so it shows the bytes as they are.
 */
export async function withMountedVolume<T>(image: string, vol: SnapshotVolume, mnt: string, fn: () => Promise<T>, readOnly = false): Promise<T> {
  const loop = attachLoop(image, vol, readOnly);
  try {
    const opts = [readOnly ? 'ro' : 'rw', ...(vol.fs === 'xfs' ? ['nouuid'] : []), ...(readOnly && vol.fs !== 'xfs' ? ['noload'] : [])];
    run('mount', ['-o', opts.join(','), loop, mnt]);
    try {
      return await fn();
    } finally {
      run('umount', [mnt]);
    }
  } finally {
    run('losetup', ['-d', loop]);
  }
}

/** fsck (never writing) of one volume of a raw image; throws with the checker's output when it is not clean. */
export function fsckVolume(image: string, vol: SnapshotVolume): void {
  const loop = attachLoop(image, vol, true);
  try {
    if (vol.fs === 'xfs') run('xfs_repair', ['-n', loop]);
    else run('e2fsck', ['-fn', loop]);
  } finally {
    run('losetup', ['-d', loop]);
  }
}

/**
 * Copies the raw image `base` (make-image's, described by `manifest`) to `path` while its ext4
 * and xfs volumes are mounted, after writing 20 files to each, deleting one and syncing one; then
 * replays a second copy to learn the truth. Works under `dir` (left empty but for `path`).
 */
export async function makeCrashSnapshot(base: string, manifest: Manifest, dir: string, path: string): Promise<CrashSnapshot> {
  const dirty = manifest.volumes.filter((v) => DIRTIED.includes(v.fs)).map(({ name, fs, offsetBytes, sizeBytes }) => ({ name, fs, offsetBytes, sizeBytes }));
  const work = join(dir, `crash-snapshot-${process.pid}`);
  await mkdir(work);
  try {
    const live = join(work, 'live.raw');
    run('cp', ['--sparse=always', '--reflink=auto', base, live]);
    const loops: string[] = [];
    const mounts: string[] = [];
    try {
      for (const vol of dirty) {
        const loop = attachLoop(live, vol, false);
        loops.push(loop);
        const at = join(work, `live-${vol.fs}`);
        await mkdir(at);
        run('mount', ['-o', vol.fs === 'xfs' ? 'nouuid' : 'rw', loop, at]);
        mounts.push(at);
        for (let i = 0; i < 20; i++) await writeFile(join(at, `new-${i}.bin`), createHash('sha512').update(`${vol.fs}${i}`).digest().toString('hex').repeat(2000 + i * 100));
        await rm(join(at, 'new-3.bin'));
        run('sync', ['-f', join(at, 'new-0.bin')]);
      }
      run('cp', ['--sparse=always', live, path]);
    } finally {
      for (const at of mounts) run('umount', [at]);
      for (const loop of loops) run('losetup', ['-d', loop]);
    }
    const replayed = join(work, 'replayed.raw');
    run('cp', ['--sparse=always', '--reflink=auto', path, replayed]);
    const mnt = join(work, 'mnt');
    await mkdir(mnt);
    const truth: Record<string, Record<string, string>> = {};
    for (const vol of dirty) truth[vol.name] = await withMountedVolume(replayed, vol, mnt, () => hashTree(mnt));
    return { path, dirty, truth };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The files each dirty volume of `image` (raw) holds, read without replaying anything, after
 * an fsck that must be clean: what an output is compared with the truth by.
 */
export async function readDirtyVolumes(image: string, snapshot: CrashSnapshot, mnt: string): Promise<Record<string, Record<string, string>>> {
  const found: Record<string, Record<string, string>> = {};
  for (const vol of snapshot.dirty) {
    fsckVolume(image, vol);
    found[vol.name] = await withMountedVolume(image, vol, mnt, () => hashTree(mnt), true);
  }
  return found;
}

/** The base image's manifest with the dirty volumes' files as they are after replay (symlinks as built). */
export function snapshotManifest(manifest: Manifest, snapshot: CrashSnapshot): Manifest {
  return {
    ...manifest,
    volumes: manifest.volumes.map((v) => (snapshot.truth[v.name] ? { ...v, files: snapshot.truth[v.name]! } : v)),
  };
}
