import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchJournal, batchId, journalDir } from '../../../src/batch/journal.js';
import { diskKey, recordDone, resumeVerdict } from '../../../src/batch/resume.js';
import { partialPathFor } from '../../../src/modes/output-target.js';
import type { Options } from '../../../src/options.js';
import type { RunReport } from '../../../src/report/types.js';

const report = (path: string) => ({ input: { path, allocatedBytes: 100, virtualSizeBytes: 200 }, allocatedBytesAfter: 40 }) as unknown as RunReport;
const inPlace = (input: string) => ({ mode: 'in-place', input }) as unknown as Options;
const copy = (input: string, output: string) => ({ mode: 'copy', input, output }) as unknown as Options;

describe('batch journal', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-journal-test-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lives under XDG_STATE_HOME, else ~/.local/state; the ID follows the batch description', () => {
    expect(journalDir({ XDG_STATE_HOME: '/s' })).toBe('/s/sparsify/batches');
    expect(journalDir({ HOME: '/home/u' })).toBe('/home/u/.local/state/sparsify/batches');
    expect(journalDir({ HOME: '/home/u', XDG_STATE_HOME: 'relative' })).toBe('/home/u/.local/state/sparsify/batches');
    expect(batchId([['disk', '/a', null]])).toBe(batchId([['disk', '/a', null]]));
    expect(batchId([['disk', '/a', null]])).not.toBe(batchId([['disk', '/b', null]]));
  });

  it('records done disks durably; --resume reads them back, a new run starts empty and removes the old journal', async () => {
    const j = await BatchJournal.open(dir, 'b1', false);
    expect(j.found).toBe(false);
    await Promise.all([j.markDone('a', { report: report('/a') }), j.markDone('b', { report: report('/b') })]);
    // Only the journal itself: the temporary name of each write was renamed over it.
    expect(await readdir(dir)).toEqual(['b1.json']);
    const again = await BatchJournal.open(dir, 'b1', true);
    expect(again.found).toBe(true);
    expect(again.doneCount).toBe(2);
    expect(again.doneEntry('b')?.report.input.path).toBe('/b');
    const fresh = await BatchJournal.open(dir, 'b1', false);
    expect(fresh.found).toBe(true);
    expect(fresh.doneEntry('a')).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
    await fresh.remove();
  });

  it('refuses a journal that is not JSON, not ours or of another batch, saying how to start over', async () => {
    await writeFile(join(dir, 'b2.json'), '{"tool":"spars');
    await expect(BatchJournal.open(dir, 'b2', true)).rejects.toThrow(/b2.json cannot be used: it is not JSON/);
    await writeFile(join(dir, 'b2.json'), JSON.stringify({ tool: 'sparsify', journal: 1, batch: 'other', done: {} }));
    await expect(BatchJournal.open(dir, 'b2', true)).rejects.toThrow(/belongs to another batch/);
    await writeFile(join(dir, 'b2.json'), JSON.stringify({ tool: 'sparsify', journal: 1, batch: 'b2', done: { x: {} } }));
    await expect(BatchJournal.open(dir, 'b2', true)).rejects.toThrow(/entry for x has no report/);
  });

  it('resume: an in-place disk recorded done is not run again; an unrecorded one runs', async () => {
    const j = await BatchJournal.open(dir, 'b3', false);
    const a = inPlace('/a');
    await recordDone(j, diskKey(a, {}), a).onReport!(report('/a'));
    const r = await BatchJournal.open(dir, 'b3', true);
    expect(await resumeVerdict(r, diskKey(a, {}), a)).toEqual({ kind: 'done', report: report('/a') });
    expect((await resumeVerdict(r, diskKey(inPlace('/b'), {}), inPlace('/b'))).kind).toBe('run');
    // The same image as a domain's disk is another key.
    expect(diskKey(a, { domain: 'g', target: 'vda' })).not.toBe(diskKey(a, {}));
  });

  it('resume: a done copy counts only while its output is the file written; gone: run again; changed: refused', async () => {
    const out = join(dir, 'out.raw');
    const o = copy('/in.raw', out);
    const key = diskKey(o, {});
    const j = await BatchJournal.open(dir, 'b4', false);
    // The run writes the partial, the hook records it, then the copy renames it into place.
    await writeFile(partialPathFor(out, process.pid), 'image bytes');
    await recordDone(j, key, o).onReport!(report('/in.raw'));
    let r = await BatchJournal.open(dir, 'b4', true);
    expect((await resumeVerdict(r, key, o)).kind).toBe('run');
    expect(r.doneEntry(key)).toBeUndefined();
    await recordDone(r, key, o).onReport!(report('/in.raw'));
    const { rename } = await import('node:fs/promises');
    await rename(partialPathFor(out, process.pid), out);
    r = await BatchJournal.open(dir, 'b4', true);
    expect((await resumeVerdict(r, key, o)).kind).toBe('done');
    await utimes(out, new Date(), new Date(Date.now() + 5000));
    const v = await resumeVerdict(r, key, o);
    expect(v.kind).toBe('refuse');
    expect(JSON.stringify(v)).toContain('changed since');
    expect(JSON.parse(await readFile(r.path, 'utf8')).done[key].output.sizeBytes).toBe('image bytes'.length);
  });
});
