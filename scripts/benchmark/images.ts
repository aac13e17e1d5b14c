/**
 * The bench images: three live-data profiles built by scripts/make-image, a dirty-volume one
 * (a crash-consistent snapshot: ext4 and xfs copied while mounted and written, beside a btrfs)
 * and a real-data one (the kept files are this host's own binaries, libraries and text), each
 * with a "floor" twin holding the same kept files and no deleted data. Built once, cached in
 * BENCH_DIR under a name that carries the arguments and make-image's hash (and for `real`, a
 * hash of the host files' list).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCrashSnapshot, snapshotManifest } from '../../test/helpers/crash-snapshot.js';
import { readManifest } from '../../test/helpers/verify.js';

/**
 * How much of the data a plain copy reads is live (kept files) rather than deleted garbage;
 * `dirty` is `little` on ext4, xfs and btrfs, its ext4 and xfs with journals to replay; `real`
 * is `half` with kept files that compress as a guest's do (pseudo-random data does not compress
 * at all, which would make every compression figure benchmark-shaped).
 */
export type ProfileName = 'little' | 'half' | 'mostly' | 'dirty' | 'real';
export const PROFILE_NAMES: readonly ProfileName[] = ['little', 'half', 'mostly', 'dirty', 'real'];
/** The profiles a bench runs unless --images names others. */
export const DEFAULT_PROFILES: readonly ProfileName[] = ['little', 'half', 'mostly'];
/** The dirty profile's filesystems, whatever --fs says: the map engine can read none of them. */
const DIRTY_FS: readonly string[] = ['ext4', 'xfs', 'btrfs'];
/**
 * Where the real profile's kept files come from (make-image --fill-from): a Debian host's
 * executables, shared libraries (and the Python, Perl and Node code below /usr/lib), and
 * documentation, locales and icons — some of it already compressed (.gz, .png), as in a guest.
 */
const REAL_FILL_FROM: readonly string[] = ['/usr/lib', '/usr/share', '/usr/bin'];

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
  real: { fill: 0.46, garbage: 0.35 },
};

/** The make-image arguments of one image. */
export interface ImageSpec {
  readonly sizeArg: string;
  readonly fs: readonly string[];
  readonly fillMiB: number;
  readonly garbageMiB: number;
  /** Copied while its ext4 and xfs were mounted and written (test/helpers/crash-snapshot.ts). */
  readonly crash?: boolean;
  /** The kept files' data comes from these host directories (make-image --fill-from). */
  readonly fillFrom?: readonly string[];
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
  if (profile === 'dirty') return { ...spec, crash: true };
  if (profile === 'real') return { ...spec, fillFrom: REAL_FILL_FROM };
  return spec;
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
 * What make-image --fill-from would copy: the files' paths, sizes and change times, hashed (an
 * upgrade of the host's packages changes the real image, so it names another one).
 */
function hostFilesHash(dirs: readonly string[]): string {
  const list = execFileSync('find', [...dirs, '-xdev', '-type', 'f', '-size', '+0', '-printf', '%p\\t%s\\t%C@\\n'], { maxBuffer: 1 << 30 });
  const sorted = list.toString('utf8').split('\n').sort().join('\n');
  return createHash('sha256').update(sorted).digest('hex').slice(0, 8);
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
  const real = spec.fillFrom ? `real${hostFilesHash(spec.fillFrom)}-` : '';
  // The real tag first: no other profile's stem is a prefix of a real image's name (stale removal below).
  const stem = `bench-${real}${spec.sizeArg}-${spec.fs.join('-')}-g${spec.garbageMiB}-f${spec.fillMiB}-${spec.crash ? 'crash-' : ''}`;
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
      '--fill', String(spec.fillMiB), '--garbage', String(spec.garbageMiB),
      ...(spec.fillFrom ? ['--fill-from', spec.fillFrom.join(':')] : []), built], { stdio: ['ignore', 'inherit', 'inherit'] });
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
