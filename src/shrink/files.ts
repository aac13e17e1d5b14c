/**
 * "Every file identical" (issue 12), checked by the product itself: each filesystem that is
 * resized (ext2/3/4, an LV's too, ntfs, btrfs) is listed in the appliance once after its clean
 * check and before its resize, and once more where it lies after the resize and the moves; the two
 * listings must be equal. A listing is every regular file's MD5 (libguestfs' `checksums-out md5`:
 * `find -type f | xargs md5sum`; MD5 is no defence against an adversary, but none is here: it
 * must only see a block lost, moved wrong or zeroed, which any of crc, md5 or sha256 sees, and
 * md5sum was as fast as cksum and 1.6 times faster than sha256sum under TCG; README, "Shrinking the virtual disk") plus every
 * path of any kind (`find0`: a directory, symlink or device node lost or added). Symlink targets,
 * modes and owners are not compared: libguestfs has no bulk call for them short of `debug sh`,
 * which is outside its stable API. Both calls are FileOut: the listing streams to a file under
 * the run's work directory, whatever its size. Filesystems moved whole (xfs, a kept one) are
 * byte copies and are not listed.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { Appliance } from '../engines/appliance/guestfish.js';
import type { Step } from './margin.js';
import { alterFileForTest } from './test-hook.js';

/** The checksum libguestfs runs over every regular file (see the module comment for why MD5). */
export const FILE_CHECKSUM = 'md5';

/** Where a filesystem is mounted in the appliance while it is listed. */
const MOUNTPOINT = '/';

/** One filesystem's listing: path (`/etc/passwd`) → its checksum, or '' for a path that is not a regular file. */
export interface FileListing {
  readonly device: string;
  readonly entries: ReadonlyMap<string, string>;
  /** Regular files checksummed. */
  readonly files: number;
}

/** `./etc/passwd`, `etc/passwd` or `/etc/passwd` → `/etc/passwd`. */
function absolute(path: string): string {
  return '/' + path.replace(/^\.?\/+/, '').replace(/^\.$/, '');
}

/**
 * md5sum's lines (`HASH  ./path`; a line starting with `\` has its path's `\` and newline escaped,
 * which stays as is: both listings escape alike) → path → hash. A filesystem without a regular
 * file gives one line for `-`: xargs runs md5sum once with no file, on its /dev/null stdin.
 */
export function parseChecksums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^\\?([0-9a-f]+) [ *](.*)$/.exec(line);
    if (!m) throw new Error(`checksums-out: not a checksum line: ‘${line}’`);
    if (m[2] === '-') continue;
    sums.set(absolute(m[2]!), m[1]!);
  }
  return sums;
}

/** find0's NUL-separated paths and the checksums → one listing. */
export function makeListing(device: string, paths: string, sums: ReadonlyMap<string, string>): FileListing {
  const entries = new Map<string, string>();
  for (const p of paths.split('\0')) if (p !== '') entries.set(absolute(p), '');
  for (const [p, sum] of sums) entries.set(p, sum);
  return { device, entries, files: sums.size };
}

/** The first path, in path order, where `after` is not `before`, said in a few words; undefined when they are equal. */
export function firstDifference(before: FileListing, after: FileListing): string | undefined {
  const paths = [...new Set([...before.entries.keys(), ...after.entries.keys()])].sort();
  for (const p of paths) {
    const b = before.entries.get(p);
    const a = after.entries.get(p);
    if (b === a) continue;
    if (a === undefined) return `${p} is missing`;
    if (b === undefined) return `${p} appeared`;
    return `${p} differs`;
  }
  return undefined;
}

/** Lists the filesystem mounted at the appliance's `/` (see the module comment). */
export async function listMounted(g: Appliance, device: string, workDir: string): Promise<FileListing> {
  const sumsFile = join(workDir, 'files-sums.txt');
  const pathsFile = join(workDir, 'files-paths.bin');
  try {
    await g.run('checksums-out', FILE_CHECKSUM, MOUNTPOINT, sumsFile);
    await g.run('find0', MOUNTPOINT, pathsFile);
    return makeListing(device, await readFile(pathsFile, 'utf8'), parseChecksums(await readFile(sumsFile, 'utf8')));
  } finally {
    await rm(sumsFile, { force: true });
    await rm(pathsFile, { force: true });
  }
}

/** The listing's step name, as its error says it. */
export function listingStep(device: string, when: 'before' | 'after'): string {
  return `listing the files of ${device} ${when} the resize (checksums-out ${FILE_CHECKSUM}, find0)`;
}

/** Mounts `device` read-only, lists it, unmounts it; `when` names the step in its error. */
export async function listFiles(g: Appliance, device: string, workDir: string, step: Step, when: 'before' | 'after'): Promise<FileListing> {
  return step(listingStep(device, when), async () => {
    await g.run('mount-ro', device, MOUNTPOINT);
    try {
      return await listMounted(g, device, workDir);
    } finally {
      await g.run('umount-all');
    }
  });
}

/** Lists `before.device` where it now lies and compares: a difference fails the run naming the filesystem and the first differing path. */
export async function checkFilesAfter(g: Appliance, before: FileListing, workDir: string, step: Step): Promise<void> {
  await alterFileForTest(g, before.device, MOUNTPOINT);
  const after = await listFiles(g, before.device, workDir, step, 'after');
  const differs = firstDifference(before, after);
  if (differs !== undefined) {
    throw new SparsifyError('TOOL_FAILED', `--shrink: ${before.device} after the resize: ${differs}`, { hint: 'the input is unchanged and no output was written' });
  }
}
