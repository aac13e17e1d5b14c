/**
 * --resume, per disk: whether an earlier run of the batch finished it (then its report is
 * taken from the journal and the disk is not touched), and the hook that records a disk done
 * once its run has written and fsynced everything (src/batch/journal.ts says why that point).
 */
import { realpath } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { partialPathFor } from '../modes/output-target.js';
import type { RunHooks } from '../modes/run-hooks.js';
import type { Options } from '../options.js';
import type { RunReport } from '../report/types.js';
import { outputMatches, stampOf, type BatchJournal, type OutputStamp } from './journal.js';

/** What to do with one disk of a resumed batch. */
export type ResumeVerdict =
  | { readonly kind: 'run' }
  | { readonly kind: 'done'; readonly report: RunReport }
  | { readonly kind: 'refuse'; readonly error: string };

/** A disk's key in the journal: where it belongs, what it reads and where it writes. */
export function diskKey(options: Options, where: { readonly domain?: string; readonly target?: string }): string {
  const owner = where.domain !== undefined ? `${where.domain}/${where.target} ` : '';
  return `${owner}${options.input} -> ${options.mode === 'copy' ? options.output : 'in place'}`;
}

/**
 * Whether the disk still has to run. A copy recorded done whose output is gone (the run was
 * cut off between the journal and the rename) runs again; one whose output changed since is
 * refused rather than overwritten.
 */
export async function resumeVerdict(journal: BatchJournal, key: string, options: Options): Promise<ResumeVerdict> {
  const entry = journal.doneEntry(key);
  if (!entry) return { kind: 'run' };
  if (options.mode !== 'copy') return { kind: 'done', report: entry.report };
  const now = await outputMatches(options.output, entry.output);
  if (now === 'same') return { kind: 'done', report: entry.report };
  if (now === 'missing') {
    await journal.forget(key);
    return { kind: 'run' };
  }
  return {
    kind: 'refuse',
    error: `its output ${options.output} is not the file an earlier run of this batch wrote (it changed since): remove it, or run the batch without --resume`,
  };
}

/** The hook that records the disk done in the journal before the run commits. */
export function recordDone(journal: BatchJournal, key: string, options: Options): RunHooks {
  return {
    async onReport(report) {
      const output = options.mode === 'copy' ? await writtenStamp(options.output) : undefined;
      await journal.markDone(key, { report, ...(output ? { output } : {}) });
    },
  };
}

/**
 * The copy's output as written, under the temporary name it has until the rename (same inode:
 * the rename keeps size and mtime). The name is the one copy mode gives a new file
 * (src/modes/output-target.ts), in the output's directory with links resolved or not.
 */
async function writtenStamp(output: string): Promise<OutputStamp | undefined> {
  const dirs = [dirname(output), await realpath(dirname(output)).catch(() => dirname(output))];
  for (const dir of dirs) {
    const stamp = await stampOf(partialPathFor(join(dir, basename(output)), process.pid)).catch(() => undefined);
    if (stamp) return stamp;
  }
  return undefined;
}
