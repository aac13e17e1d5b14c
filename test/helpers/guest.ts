/**
 * The bootable Debian 12 guest of scripts/make-guest, built once and shared by every test file
 * that needs a real guest (inspection, templating). The debootstrap packages are kept beside
 * it (guest-debs.tgz), so a rebuild after editing make-guest downloads nothing. The cache key
 * covers the script's text and the arguments; a lock keeps parallel test files to one build.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, acquireLock, exists, fixtureDir } from './image.js';

const execFileAsync = promisify(execFile);
const MAKE_GUEST = join(REPO_ROOT, 'scripts', 'make-guest');
/** A build takes about 4 minutes with the packages saved (254 s at load 13; was 7 quiet, 11 in CI); others wait for it. */
const BUILD_WAIT_MS = 40 * 60_000;

/**
 * The guest of issue 12's "done when": a 4 GiB GPT disk (ext4 root, then the swap at its end),
 * about 1 GiB used. The raw file is sparse: the extra GiB costs no host space.
 */
const GUEST_SIZE = '4G';

export interface GuestOptions {
  readonly hostname?: string;
  readonly garbageMiB?: number;
}

export interface BuiltGuest {
  readonly imagePath: string;
  readonly format: 'raw';
  readonly hostname: string;
}

/** Builds the guest (or returns the cached one); treat the file as read-only and copy it to modify. */
export async function buildGuest(options: GuestOptions = {}): Promise<BuiltGuest> {
  const hostname = options.hostname ?? 'sparsify-guest';
  const dir = fixtureDir();
  await mkdir(dir, { recursive: true });
  const shape = ['--hostname', hostname, '--garbage', String(options.garbageMiB ?? 100), '--size', GUEST_SIZE];
  // The packages' place is not part of the guest: it stays out of the key.
  const key = createHash('sha256').update(await readFile(MAKE_GUEST)).update('\0').update(shape.join('\0')).digest('hex').slice(0, 16);
  const args = [...shape, '--debs', join(dir, 'guest-debs.tgz')];
  const imagePath = join(dir, `guest-${hostname}-${key}.raw`);
  // make-guest renames its output into place last: a file there is a finished guest.
  if (!(await exists(imagePath))) {
    const release = await acquireLock(join(dir, `guest-${key}.lock`), BUILD_WAIT_MS);
    try {
      if (!(await exists(imagePath))) await execFileAsync(MAKE_GUEST, [...args, imagePath], { maxBuffer: 16 << 20, timeout: BUILD_WAIT_MS });
    } finally {
      await release();
    }
  }
  return { imagePath, format: 'raw', hostname };
}

/**
 * Runs `body` on the guest's root filesystem (partition 1) mounted read-only from a read-only
 * loop device (noload: no journal replay), then lets go: a look inside the raw guest in
 * milliseconds, where an appliance launch takes a minute under TCG. Needs root.
 */
export async function withGuestRoot<T>(imagePath: string, body: (root: string) => Promise<T>): Promise<T> {
  const table = JSON.parse((await execFileAsync('sfdisk', ['--json', imagePath])).stdout) as { partitiontable: { sectorsize?: number; partitions: { start: number; size: number }[] } };
  const sector = table.partitiontable.sectorsize ?? 512;
  const root = table.partitiontable.partitions[0]!;
  const loop = (await execFileAsync('losetup', ['-r', '--find', '--show', '-o', String(root.start * sector), '--sizelimit', String(root.size * sector), imagePath])).stdout.trim();
  const mnt = await mkdtemp(join(tmpdir(), 'sparsify-it-guest-root-'));
  try {
    await execFileAsync('mount', ['-o', 'ro,noload', loop, mnt]);
    try {
      return await body(mnt);
    } finally {
      await execFileAsync('umount', [mnt]);
    }
  } finally {
    await execFileAsync('losetup', ['-d', loop]);
    await rm(mnt, { recursive: true, force: true });
  }
}
