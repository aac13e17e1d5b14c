/**
 * What a test reads from a shrunk (and sealed) Debian guest: the differences between two root
 * trees that a template's report does not name, and what the guest's serial console says about
 * its disk, its root and its swap once booted (test/helpers/boot.ts).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

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
