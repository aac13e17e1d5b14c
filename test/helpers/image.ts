/**
 * Test fixtures built by scripts/make-image and cached, so several test files share one build.
 *
 * The cache key covers the arguments and the script's own text: editing make-image rebuilds.
 * A lock file keeps two test processes (vitest runs files in parallel forks) from building the
 * same image at once; a lock left by a dead process is taken over. A qcow2 fixture is its raw
 * twin converted, as make-image itself makes one: the raw build is shared, not run twice.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readManifest, type Manifest } from './verify.js';

const execFileAsync = promisify(execFile);

/** The repository root (this file lives in test/helpers/). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const MAKE_IMAGE = join(REPO_ROOT, 'scripts', 'make-image');
const LOCK_WAIT_MS = 600_000;

/** Arguments of scripts/make-image. */
export interface ImageOptions {
  readonly layout: 'gpt' | 'mbr' | 'whole';
  readonly fs: readonly ('ext4' | 'ext3' | 'ext2' | 'xfs' | 'ntfs' | 'vfat' | 'swap' | 'btrfs')[];
  /** Virtual size as make-image takes it: "2G", "512M". */
  readonly size: string;
  readonly fillMiB?: number;
  readonly garbageMiB?: number;
  readonly format?: 'raw' | 'qcow2';
  readonly seed?: number;
}

/** A built (or reused) fixture; treat the files as read-only and copy them to modify. */
export interface BuiltImage {
  readonly imagePath: string;
  readonly manifestPath: string;
  readonly format: 'raw' | 'qcow2';
  readonly manifest: Manifest;
  /** False when the image came from the cache. */
  readonly built: boolean;
  readonly buildMs: number;
}

/** Where fixtures are cached: $SPARSIFY_FIXTURE_DIR, else .cache/fixtures in the repo (gitignored). */
export function fixtureDir(): string {
  return process.env.SPARSIFY_FIXTURE_DIR ?? join(REPO_ROOT, '.cache', 'fixtures');
}

function makeImageArgs(options: ImageOptions): string[] {
  return [
    '--layout', options.layout,
    '--fs', options.fs.join(','),
    '--size', options.size,
    '--fill', String(options.fillMiB ?? 8),
    '--garbage', String(options.garbageMiB ?? 32),
    '--format', options.format ?? 'raw',
    '--seed', String(options.seed ?? 1),
  ];
}

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Takes an O_EXCL lock file holding our pid; waits for a live holder, takes over a dead one's. */
export async function acquireLock(lockPath: string, waitMs = LOCK_WAIT_MS): Promise<() => Promise<void>> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(lockPath, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
    // An empty file is a holder between open and write: give it time rather than steal.
    if (holder > 0 && !processAlive(holder)) {
      await rm(lockPath, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${lockPath}: held by pid ${holder} for over ${waitMs} ms`);
    await sleep(250);
  }
}

/** Builds a fixture with scripts/make-image, or returns the cached one built with the same arguments. */
export async function buildImage(options: ImageOptions): Promise<BuiltImage> {
  const args = makeImageArgs(options);
  const format = options.format ?? 'raw';
  const script = await readFile(MAKE_IMAGE);
  const key = createHash('sha256').update(script).update('\0').update(args.join('\0')).digest('hex').slice(0, 16);
  const dir = fixtureDir();
  await mkdir(dir, { recursive: true });
  const base = `${options.layout}-${options.fs.join('-')}-${options.size}-${key}`;
  const imagePath = join(dir, `${base}.${format}`);
  const manifestPath = `${imagePath}.manifest.json`;
  const started = Date.now();
  let built = false;
  // make-image renames the manifest into place last, so its presence means the image is complete.
  if (!(await exists(manifestPath))) {
    const raw = format === 'qcow2' ? await buildImage({ ...options, format: 'raw' }) : undefined;
    const release = await acquireLock(join(dir, `${base}.lock`));
    try {
      if (!(await exists(manifestPath))) {
        if (raw) await convertToQcow2(raw, imagePath, manifestPath);
        else await execFileAsync(MAKE_IMAGE, [...args, imagePath], { maxBuffer: 16 << 20 });
        built = true;
      }
    } finally {
      await release();
    }
  }
  return { imagePath, manifestPath, format, manifest: await readManifest(manifestPath), built, buildMs: Date.now() - started };
}

/**
 * The qcow2 fixture from its raw twin, with the command make-image ends with for --format qcow2;
 * the manifest is the raw one's but for its format. The manifest goes into place last.
 */
async function convertToQcow2(raw: BuiltImage, imagePath: string, manifestPath: string): Promise<void> {
  const [tmpImage, tmpManifest] = [`${imagePath}.tmp-${process.pid}`, `${manifestPath}.tmp-${process.pid}`];
  try {
    await execFileAsync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw.imagePath, tmpImage]);
    const manifest = JSON.parse(await readFile(raw.manifestPath, 'utf8')) as Record<string, unknown>;
    await writeFile(tmpManifest, `${JSON.stringify({ ...manifest, format: 'qcow2' }, null, 2)}\n`);
    await rename(tmpImage, imagePath);
    await rename(tmpManifest, manifestPath);
  } finally {
    await rm(tmpImage, { force: true });
    await rm(tmpManifest, { force: true });
  }
}

/** Copies an image keeping it sparse (a fixture copy to modify or sparsify without touching the cache). */
export async function copyImage(source: string, destination: string): Promise<void> {
  await execFileAsync('cp', ['--sparse=always', '--reflink=auto', source, destination]);
}
