import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Logger } from '../../../src/context.js';
import { makeContext } from '../../../src/context.js';
import { removeDebris } from '../../../src/host/debris.js';
import { livenessOf, readSelfIdentity, readStartTicks, type ProcessIdentity } from '../../../src/host/process-identity.js';
import { OWNER_FILE, claimDeadWorkDir, makeWorkDir, readWorkDirOwner } from '../../../src/host/work-dir.js';

/** A logger that keeps the warnings. */
function recorder(): { log: Logger; warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, log: { debug() {}, info() {}, trace() {}, warn: (m) => warnings.push(m) } };
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

/** A work directory as another run would have made it, marked with `owner`. */
async function markedDir(parent: string, name: string, owner: ProcessIdentity | undefined): Promise<string> {
  const dir = join(parent, name);
  await mkdir(dir);
  await writeFile(join(dir, 'qsd-1.sock'), '');
  if (owner) await writeFile(join(dir, OWNER_FILE), JSON.stringify(owner));
  return dir;
}

describe('process identity', () => {
  it('tells this process from a dead one, a reused pid, another boot and another pid namespace', async () => {
    const self = await readSelfIdentity();
    expect(self.startTicks).toBe(await readStartTicks(process.pid));
    expect(await livenessOf(self, self)).toBe('alive');
    expect(await livenessOf({ ...self, pid: await deadPid() }, self)).toBe('dead');
    expect(await livenessOf({ ...self, startTicks: self.startTicks - 1 }, self)).toBe('dead');
    expect(await livenessOf({ ...self, bootId: 'another-boot' }, self)).toBe('dead');
    expect(await livenessOf({ ...self, pidNamespace: 'pid:[1]' }, self)).toBe('unknown');
  });
});

describe('removeDebris', () => {
  let parent: string;
  let self: ProcessIdentity;
  beforeEach(async () => {
    parent = await mkdtemp(join(tmpdir(), 'debris-unit-'));
    self = await readSelfIdentity();
  });
  afterEach(() => rm(parent, { recursive: true, force: true }));

  it('removes work directories of dead runs with a warning, and nothing a live or unknown run may own', async () => {
    const live = await makeWorkDir(parent);
    expect(await readWorkDirOwner(live)).toEqual(self);
    const dead = await markedDir(parent, 'sparsify-dead01', { ...self, pid: await deadPid() });
    const reused = await markedDir(parent, 'sparsify-reused', { ...self, startTicks: self.startTicks - 1 });
    await markedDir(parent, 'sparsify-nomark', undefined);
    await markedDir(parent, 'sparsify-otherns', { ...self, pid: await deadPid(), pidNamespace: 'pid:[1]' });
    await markedDir(parent, 'unrelated-dir', { ...self, pid: await deadPid() });
    await writeFile(join(parent, 'sparsify-file'), '');
    const { log, warnings } = recorder();
    await removeDebris(makeContext(log), { tmpDirs: [parent, join(parent, 'missing')] });
    expect((await readdir(parent)).sort()).toEqual(
      [live.slice(parent.length + 1), 'sparsify-nomark', 'sparsify-otherns', 'unrelated-dir', 'sparsify-file'].sort(),
    );
    expect(warnings.sort()).toEqual(
      [dead, reused].map((d) => expect.stringMatching(new RegExp(`^removed ${d}, left by sparsify run \\d+ when it was killed$`))),
    );
  });

  it('stops a daemon that outlived its run (its pid file in the dead directory names it)', async () => {
    const dir = await markedDir(parent, 'sparsify-daemon', { ...self, pid: await deadPid() });
    const pidFile = join(dir, 'qsd-1.pid');
    const daemon = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', pidFile], { stdio: 'ignore' });
    const exited = new Promise((resolve) => daemon.on('exit', (_code, signal) => resolve(signal)));
    await writeFile(pidFile, `${daemon.pid}\n`);
    const { log, warnings } = recorder();
    await removeDebris(makeContext(log), { tmpDirs: [parent] });
    expect(await exited).toBe('SIGTERM');
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`\\(stopped \\S+ ${daemon.pid}\\)$`))]);
    expect(await readdir(parent)).toEqual([]);
  });

  it('removes partial outputs whose run is gone, and keeps those of live runs and other files', async () => {
    const gone = await deadPid();
    const names = [`.out.img.sparsify-${gone}.partial`, `.out.img.sparsify-${process.ppid}.partial`, 'out.img', `x.sparsify-${gone}.partial.bak`];
    for (const n of names) await writeFile(join(parent, n), 'data');
    const { log, warnings } = recorder();
    await removeDebris(makeContext(log), { tmpDirs: [], outputDir: parent });
    expect((await readdir(parent)).sort()).toEqual(names.slice(1).sort());
    expect(warnings).toEqual([`removed ${join(parent, names[0]!)}, a partial output left by sparsify run ${gone} when it was killed`]);
  });

  it('lets one run claim a dead directory; a claim whose owner died is taken over', async () => {
    const dir = await markedDir(parent, 'sparsify-claim', { ...self, pid: await deadPid() });
    expect(await claimDeadWorkDir(dir, self)).toBe(true);
    expect(await claimDeadWorkDir(dir, { ...self, pid: process.ppid, startTicks: (await readStartTicks(process.ppid))! })).toBe(false);
    const other = await markedDir(parent, 'sparsify-claim2', { ...self, pid: await deadPid() });
    await writeFile(join(other, '.sparsify-cleaner'), JSON.stringify({ ...self, pid: await deadPid() }));
    expect(await claimDeadWorkDir(other, self)).toBe(true);
  });
});
