/**
 * A batch's journal (--resume): which disks are done, with their reports, so that a batch cut
 * short (Ctrl-C, a crash, SIGKILL, a reboot) goes on without redoing them.
 *
 * Where: `$XDG_STATE_HOME/sparsify/batches/ID.json` (default `~/.local/state`), ID a hash of
 * what the batch was asked to do (mode, output directory, domains and disks in order), so the
 * same command finds its journal again. It is replaced whole on every change: written to a
 * temporary name, fsynced, renamed, its directory fsynced; a reader sees the old or the new
 * one, never half of one.
 *
 * When: a disk is marked done from the run's report hook, that is after its output was written
 * and fsynced and before copy mode renames it into place (src/modes/copy.ts). So a done copy's
 * output may lack only its final name (then it is redone); an output under its final name that
 * the journal does not call done cannot exist, since the copy refuses an existing output. In
 * place there is nothing half-written to distrust: every write of a run makes zero what the
 * filesystem says is free, so a disk cut off half-way holds the same files and a second run
 * only gives back the rest.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { RunReport } from '../report/types.js';
import { errnoOf } from '../util/errno.js';
import { fsyncDir } from '../util/fsync.js';

/** The output file of a finished copy as it was when the journal recorded it. */
export interface OutputStamp {
  readonly sizeBytes: number;
  readonly mtimeMs: number;
}

/** A finished disk. */
export interface DoneEntry {
  readonly report: RunReport;
  /** Copy mode: the output as written; absent in place. */
  readonly output?: OutputStamp;
}

interface JournalDocument {
  readonly tool: 'sparsify';
  readonly journal: 1;
  readonly batch: string;
  readonly done: Record<string, DoneEntry>;
}

/** The directory of batch journals for this environment. */
export function journalDir(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.XDG_STATE_HOME && env.XDG_STATE_HOME.startsWith('/') ? env.XDG_STATE_HOME : join(env.HOME || homedir(), '.local', 'state');
  return join(state, 'sparsify', 'batches');
}

/** The journal's ID: a hash of the batch's description (see {@link journalDir}). */
export function batchId(description: unknown): string {
  return createHash('sha256').update(JSON.stringify(description)).digest('hex').slice(0, 24);
}

/** A batch's journal: read (resume) or new, rewritten atomically on every change. */
export class BatchJournal {
  private readonly done: Map<string, DoneEntry>;
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    readonly path: string,
    private readonly batch: string,
    done: Record<string, DoneEntry>,
    /** Whether an earlier run's journal was there when this one opened. */
    readonly found: boolean,
  ) {
    this.done = new Map(Object.entries(done));
  }

  /**
   * Opens the journal of batch `id` in `dir`: with `resume`, what an earlier run recorded; else
   * an empty one (an earlier run's journal is removed at once).
   */
  static async open(dir: string, id: string, resume: boolean): Promise<BatchJournal> {
    const path = join(dir, `${id}.json`);
    const text = await readFile(path, 'utf8').catch((err: unknown) => {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw new SparsifyError('BAD_PATH', `batch journal ${path} cannot be read: ${String(err)}`, { cause: err });
    });
    if (text === undefined) return new BatchJournal(path, id, {}, false);
    if (!resume) {
      // A new run of the batch: what an earlier one finished is done again, not trusted later.
      await unlink(path);
      return new BatchJournal(path, id, {}, true);
    }
    return new BatchJournal(path, id, parseJournal(text, path, id).done, true);
  }

  /** The disk's entry, if an earlier run finished it. */
  doneEntry(key: string): DoneEntry | undefined {
    return this.done.get(key);
  }

  /** How many disks are recorded done. */
  get doneCount(): number {
    return this.done.size;
  }

  /** Records a finished disk; resolves once the journal saying so is on disk. */
  markDone(key: string, entry: DoneEntry): Promise<void> {
    this.done.set(key, entry);
    return this.save();
  }

  /** Forgets a disk (its output is gone or changed: it is done again). */
  forget(key: string): Promise<void> {
    return this.done.delete(key) ? this.save() : Promise.resolve();
  }

  /** Removes the journal: the batch is over. */
  async remove(): Promise<void> {
    await this.writes;
    await unlink(this.path).catch((err: unknown) => {
      if (errnoOf(err) !== 'ENOENT') throw err;
    });
    await fsyncDir(dirname(this.path)).catch(() => undefined);
  }

  private save(): Promise<void> {
    const doc: JournalDocument = { tool: 'sparsify', journal: 1, batch: this.batch, done: Object.fromEntries(this.done) };
    const text = `${JSON.stringify(doc)}\n`;
    // One write at a time, in order: the last one holds every disk marked so far.
    this.writes = this.writes.catch(() => undefined).then(() => writeAtomically(this.path, text));
    return this.writes;
  }
}

/** Whether a done copy's output is still the file the journal recorded. */
export async function outputMatches(path: string, stamp: OutputStamp | undefined): Promise<'same' | 'missing' | 'changed'> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return 'missing';
  return stamp !== undefined && st.isFile() && st.size === stamp.sizeBytes && st.mtimeMs === stamp.mtimeMs ? 'same' : 'changed';
}

/** The stamp of a file about to be recorded. */
export async function stampOf(path: string): Promise<OutputStamp> {
  const st = await stat(path);
  return { sizeBytes: st.size, mtimeMs: st.mtimeMs };
}

function parseJournal(text: string, path: string, id: string): JournalDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw badJournal(path, 'it is not JSON', err);
  }
  const d = doc as Partial<JournalDocument> | null;
  if (!d || d.tool !== 'sparsify' || d.journal !== 1 || typeof d.done !== 'object' || d.done === null) throw badJournal(path, 'it is not a sparsify batch journal');
  if (d.batch !== id) throw badJournal(path, 'it belongs to another batch');
  for (const [key, entry] of Object.entries(d.done)) {
    if (typeof entry?.report?.input?.allocatedBytes !== 'number') throw badJournal(path, `its entry for ${key} has no report`);
  }
  return d as JournalDocument;
}

function badJournal(path: string, why: string, cause?: unknown): SparsifyError {
  return new SparsifyError('BAD_PATH', `batch journal ${path} cannot be used: ${why}`, {
    hint: 'remove it to run the whole batch again',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Writes `text` to `path` so that `path` is always the old or the new content, durably. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  const fh = await open(temp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(temp, path);
  await fsyncDir(dir);
}
