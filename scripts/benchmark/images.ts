/**
 * The bench images: three live-data profiles built by scripts/make-image, and a dirty-volume one
 * (a crash-consistent snapshot: ext4 and xfs copied while mounted and written, beside a btrfs),
 * each with a "floor" twin holding the same kept files and no deleted data. Built once, cached
 * in BENCH_DIR under a name that carries the arguments and make-image's hash.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCrashSnapshot, snapshotManifest } from '../../test/helpers/crash-snapshot.js';
import { readManifest } from '../../test/helpers/verify.js';

/**
 * How much of the data a plain copy reads is live (kept files) rather than deleted garbage;
 * `dirty` is `little` on ext4, xfs and btrfs, its ext4 and xfs with journals to replay.
 */
export type ProfileName = 'little' | 'half' | 'mostly' | 'dirty';
export const PROFILE_NAMES: readonly ProfileName[] = ['little', 'half', 'mostly', 'dirty'];
/** The profiles a bench runs unless --images names others. */
export const DEFAULT_PROFILES: readonly ProfileName[] = ['little', 'half', 'mostly'];
/** The dirty profile's filesystems, whatever --fs says: the map engine can read none of them. */
const DIRTY_FS: readonly string[] = ['ext4', 'xfs', 'btrfs'];

/**
 * Kept files per filesystem and garbage per volume as fractions of the room make-image allows a
 * volume (85 % of it, less 8 MiB). With ext4, xfs, vfat and swap that is about 14 %, 50 % and
 * 91 % live data; the manifest gives the exact figure, which the report prints.
 */
const PROFILES: Record<ProfileName, { readonly fill: number; readonly garbage: number }> = {
  little: { fill: 0.15, garbage: 0.7 },
  half: { fill: 0.46, garbage: 0.35 },
  mostly: { fill: 0.8, garbage: 0.06 },
  dirty: { fill: 0.15, garbage: 0.7 },
};

/** The make-image arguments of one image. */
export interface ImageSpec {
  readonly sizeArg: string;
  readonly fs: readonly string[];
  readonly fillMiB: number;
  readonly garbageMiB: number;
  /** Copied while its ext4 and xfs were mounted and written (test/helpers/crash-snapshot.ts). */
  readonly crash?: boolean;
}

/** A built image, in both input formats, with its manifest. */
export interface BenchImage {
  readonly spec: ImageSpec;
  /** BENCH_DIR/images/bench-…: BASE.raw, BASE.qcow2 and their .manifest.json. */
  readonly base: string;
  readonly virtualBytes: number;
  /** Sum of the manifest's liveBytes (du of the kept files). */
  readonly liveBytes: number;
  path(format: 'raw' | 'qcow2'): string;
  manifest(format: 'raw' | 'qcow2'): string;
}

const MIB = 1024 * 1024;

/** make-image's arguments for a profile at this size and filesystem list (its GPT arithmetic). */
export function specOf(profile: ProfileName, sizeArg: string, wantedFs: readonly string[]): ImageSpec {
  const fs = profile === 'dirty' ? DIRTY_FS : wantedFs;
  const totalMiB = Math.floor(parseSize(sizeArg) / MIB);
  const eachMiB = Math.floor((totalMiB - 2) / fs.length);
  const roomMiB = Math.floor((eachMiB * 85) / 100) - 8;
  const { fill, garbage } = PROFILES[profile];
  const spec = { sizeArg, fs, fillMiB: Math.floor(roomMiB * fill), garbageMiB: Math.floor(roomMiB * garbage) };
  return profile === 'dirty' ? { ...spec, crash: true } : spec;
}

/** The same kept files and filesystems with no deleted data: what "the live data" means. */
export function floorSpecOf(spec: ImageSpec): ImageSpec {
  return { ...spec, garbageMiB: 0 };
}

/** "8G", "512M", "1T" (binary units, as make-image's numfmt --from=iec). */
export function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)(i?B)?$/i.exec(text);
  if (!m) throw new Error(`bad size '${text}' (e.g. 8G, 512M)`);
  const power = ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
  return Number(m[1]) * 1024 ** power;
}

/**
 * BASE.raw: a crash-consistent snapshot of the image `live`, and its manifest (the dirty
 * volumes' files as they are after replay); `live` and its manifest are removed.
 */
async function snapshotOf(live: string, base: string): Promise<void> {
  const manifest = await readManifest(`${live}.manifest.json`);
  const snapshot = await makeCrashSnapshot(live, manifest, join(base, '..'), `${base}.raw.tmp`);
  renameSync(`${base}.raw.tmp`, `${base}.raw`);
  writeFileSync(`${base}.raw.manifest.json`, `${JSON.stringify(snapshotManifest(manifest, snapshot), null, 2)}\n`);
  rmSync(live, { force: true });
  rmSync(`${live}.manifest.json`, { force: true });
}

/** Builds (or finds in the cache) the raw and qcow2 image of a spec. */
export async function ensureImage(repo: string, benchDir: string, spec: ImageSpec, log: (line: string) => void): Promise<BenchImage> {
  const makeImage = join(repo, 'scripts', 'make-image');
  const hash = createHash('sha256').update(readFileSync(makeImage)).digest('hex').slice(0, 10);
  const dir = join(benchDir, 'images');
  const stem = `bench-${spec.sizeArg}-${spec.fs.join('-')}-g${spec.garbageMiB}-f${spec.fillMiB}-${spec.crash ? 'crash-' : ''}`;
  const base = join(dir, `${stem}${hash}`);
  execFileSync('mkdir', ['-p', dir]);
  // Images made by an older make-image with the same arguments are stale.
  for (const name of readdirSync(dir)) {
    if (name.startsWith(stem) && !name.startsWith(`${stem}${hash}.`)) rmSync(join(dir, name), { force: true });
  }
  if (!existsSync(`${base}.raw.manifest.json`)) {
    if (process.getuid?.() !== 0) throw new Error(`building ${base}.raw needs root (make-image uses loop devices)`);
    log(`building ${base}.raw`);
    const t0 = Date.now();
    const built = spec.crash ? `${base}.live.raw` : `${base}.raw`;
    execFileSync(makeImage, ['--layout', 'gpt', '--fs', spec.fs.join(','), '--size', spec.sizeArg,
      '--fill', String(spec.fillMiB), '--garbage', String(spec.garbageMiB), built], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (spec.crash) await snapshotOf(built, base);
    log(`built it in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  if (!existsSync(`${base}.qcow2.manifest.json`)) {
    execFileSync('qemu-img', ['convert', '-W', '-f', 'raw', '-O', 'qcow2', `${base}.raw`, `${base}.qcow2.tmp`]);
    renameSync(`${base}.qcow2.tmp`, `${base}.qcow2`);
    const manifest = readFileSync(`${base}.raw.manifest.json`, 'utf8').replace('"format": "raw"', '"format": "qcow2"');
    writeFileSync(`${base}.qcow2.manifest.json`, manifest);
  }
  const volumes = (JSON.parse(readFileSync(`${base}.raw.manifest.json`, 'utf8')) as { volumes: { liveBytes: number }[] }).volumes;
  return {
    spec,
    base,
    virtualBytes: statSync(`${base}.raw`).size,
    liveBytes: volumes.reduce((sum, v) => sum + v.liveBytes, 0),
    path: (format) => `${base}.${format}`,
    manifest: (format) => `${base}.${format}.manifest.json`,
  };
}
