/**
 * What a test reads from a shrunk (and sealed) Debian guest: its partitions, a filesystem through
 * a read-only loop device and mount, resize2fs' own minimum for its root (the bound of issue 12),
 * the differences between two root trees that a template's report does not name, and what the
 * guest's serial console says about its disk, its root and its swap once booted
 * (test/helpers/boot.ts).
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export async function sh(file: string, args: readonly string[]): Promise<string> {
  return (await execFileAsync(file, args, { maxBuffer: 64 << 20 })).stdout;
}

/** Runs `fn` with a read-only loop device over a byte window of `file`. */
export async function withLoop<T>(file: string, offsetBytes: number, sizeBytes: number, fn: (dev: string) => Promise<T>): Promise<T> {
  const dev = (await sh('losetup', ['--find', '--show', '--read-only', '-o', String(offsetBytes), '--sizelimit', String(sizeBytes), file])).trim();
  try {
    return await fn(dev);
  } finally {
    await sh('losetup', ['-d', dev]);
  }
}

/** Runs `fn` with the ext4 on `dev` mounted read-only (no journal replay) at `at`, made if missing. */
export async function withMount<T>(dev: string, at: string, fn: (dir: string) => Promise<T>): Promise<T> {
  await mkdir(at, { recursive: true });
  await sh('mount', ['-t', 'ext4', '-o', 'ro,noload', dev, at]);
  try {
    return await fn(at);
  } finally {
    await sh('umount', [at]);
  }
}

/** A partition as sfdisk gives it, in 512-byte sectors. */
export interface Part {
  start: number;
  size: number;
}

export async function partitions(path: string): Promise<Part[]> {
  return (JSON.parse(await sh('sfdisk', ['--json', path])) as { partitiontable: { partitions: Part[] } }).partitiontable.partitions;
}

/** resize2fs' own estimate (`resize2fs -P`) of the smallest the ext4 in `part` of the raw `image` can be, in bytes. */
export async function resize2fsMinimumBytes(image: string, part: Part): Promise<number> {
  return withLoop(image, part.start * 512, part.size * 512, async (dev) => {
    const blocks = Number(/minimum size of the filesystem:\s*(\d+)/.exec(await sh('resize2fs', ['-P', dev]))?.[1]);
    const blockSize = Number(/Block size:\s*(\d+)/.exec(await sh('dumpe2fs', ['-h', dev]))?.[1]);
    if (!(blocks > 0 && blockSize > 0)) throw new Error(`resize2fs -P or dumpe2fs -h gave no size for ${image} at sector ${part.start}`);
    return blocks * blockSize;
  });
}

/**
 * Issue 12's bound for the Debian guest: resize2fs' minimum for the root plus 5%, plus the swap,
 * plus 64 MiB (for the GPT, the alignment and the margin's rounding).
 */
export function shrinkBoundBytes(rootMinimumBytes: number, swapBytes: number): number {
  return Math.floor(rootMinimumBytes * 1.05) + swapBytes + 64 * 2 ** 20;
}

/** The guest path (from `/`) a `diff -r` line is about, or undefined for a line of another shape. */
function diffLinePath(line: string, roots: readonly string[]): string | undefined {
  const only = /^Only in (.+): (.+)$/.exec(line);
  const full = only ? `${only[1]}/${only[2]}` : /^(?:Files|Symbolic links|File) (\S+) (?:and|is a) /.exec(line)?.[1];
  if (full === undefined) return undefined;
  const root = roots.find((r) => full === r || full.startsWith(`${r}/`));
  return root === undefined ? undefined : full.slice(root.length).replace(/^\/*/, '/');
}

/**
 * `diff -rq --no-dereference BEFORE AFTER`, less every line about a path the template says it
 * changed (that path or one under it): what remains is a file the run altered unasked.
 */
export async function unexplainedDifferences(before: string, after: string, changedPaths: readonly string[]): Promise<string[]> {
  const { stdout } = await execFileAsync('diff', ['-rq', '--no-dereference', before, after], { maxBuffer: 64 << 20 }).catch((e: { stdout: string }) => e);
  const explained = (path: string) => changedPaths.some((c) => path === c || path.startsWith(`${c.replace(/\/$/, '')}/`));
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .filter((line) => {
      const path = diffLinePath(line, [before, after]);
      return path === undefined || !explained(path);
    });
}

/** What the kernel printed on the serial console about the virtio disk, its root and its swap. */
export interface ConsoleFacts {
  /** The disk's size as the guest sees it (virtio_blk: "[vda] N 512-byte logical blocks"). */
  readonly diskBytes: number | undefined;
  /** "EXT4-fs (vda1): mounted filesystem": the root mounted (read-only, by the initramfs). */
  readonly rootMounted: boolean;
  /** "EXT4-fs (vda1): re-mounted": remounted read-write by systemd, as fstab says. */
  readonly rootRemounted: boolean;
  /** "Adding Nk swap on /dev/vda2": swapon found the swap by the UUID in fstab. */
  readonly swapOn: boolean;
  /** The kernel's GPT complaints ("GPT:Alternate GPT header not at the end of the disk", …). */
  readonly gptWarnings: readonly string[];
}

export function readConsoleFacts(consoleText: string): ConsoleFacts {
  const blocks = /\[vda\] (\d+) 512-byte logical blocks/.exec(consoleText)?.[1];
  return {
    diskBytes: blocks === undefined ? undefined : Number(blocks) * 512,
    rootMounted: /EXT4-fs \(vda1\): mounted filesystem/.test(consoleText),
    rootRemounted: /EXT4-fs \(vda1\): re-mounted/.test(consoleText),
    swapOn: /Adding \d+k swap on \/dev\/vda2\b/.test(consoleText),
    gptWarnings: consoleText.split('\n').filter((l) => /\bGPT:/.test(l)),
  };
}
