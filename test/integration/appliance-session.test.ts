/**
 * A real libguestfs appliance over a real qemu-storage-daemon NBD export of a small qcow2
 * overlay: commands, errors, discard through to the overlay, and what disposal, an abort during
 * the launch and a SIGKILL of sparsify leave behind (nothing). TCG launches are slow here: two
 * full launches and one cut short, with generous timeouts.
 */
import { execFile, spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { ApplianceCommandError, childrenOf, launchAppliance, type ApplianceDrive } from '../../src/engines/appliance/guestfish.js';
import { checkHost, findAppliance, missingLibguestfsReason, type ApplianceHost } from '../../src/engines/appliance/host.js';
import { isAlive } from '../../src/qemu/daemon.js';
import { serveImage, type ServedImage, type ServingProcess } from '../../src/qemu/storage-daemon.js';
import { REPO_ROOT } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';

const execFileAsync = promisify(execFile);
const MiB = 1 << 20;
const LAUNCH_MS = 300_000;

/** What an appliance runs as: guestfish, its qemu and helpers, and libguestfs' directories. */
interface Footprint {
  readonly pids: number[];
  readonly dirs: string[];
}

/** guestfish and its children, and the libguestfs directories named in their command lines. */
async function footprintOf(guestfishPid: number): Promise<Footprint> {
  const children = await childrenOf(guestfishPid);
  const dirs = new Set<string>();
  for (const pid of children) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    for (const m of cmdline.matchAll(/(\/[^\0,=]*\/libguestfs[A-Za-z0-9]{6})\//g)) if (m[1]) dirs.add(m[1]);
  }
  return { pids: [guestfishPid, ...children], dirs: [...dirs] };
}

/** Whatever of `footprint` is still there after `ms`. */
async function leftAfter(footprint: Footprint, ms: number): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = [
      ...footprint.pids.filter(isAlive).map((p) => `process ${p}`),
      ...(await Promise.all(footprint.dirs.map(async (d) => ((await exists(d)) ? `directory ${d}` : '')))).filter(Boolean),
    ];
    if (left.length === 0 || Date.now() > deadline) return left;
    await delay(100);
  }
}

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Every path under `dir` whose name libguestfs gives its files (libguestfsXXXXXX, *.sock of the appliance). */
async function libguestfsFilesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries.filter((e) => /(^|\/)libguestfs[A-Za-z0-9]{6}($|\/)|guestfsd\.sock$|console\.sock$/.test(e));
}

/** The pids of qemu processes among guestfish's children. */
async function qemuChildren(guestfishPid: number): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await childrenOf(guestfishPid)) {
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.startsWith('qemu-system')) out.push(pid);
  }
  return out;
}

async function qemuIo(image: string, command: string, readOnly = true): Promise<string> {
  const { stdout } = await execFileAsync('qemu-io', [...(readOnly ? ['-r'] : []), '-f', 'qcow2', '-c', command, image]);
  return stdout;
}

describeIntegration('appliance session: guestfish over a run\'s NBD export', { tools: ['guestfish', 'qemu-img', 'qemu-io', 'qemu-storage-daemon', 'setpriv'] }, () => {
  const ctx = makeContext();
  let dir: string;
  let base: string;
  let host: ApplianceHost;

  /**
   * A fresh overlay over the patterned base (16 MiB of 0x5a, then nothing, 64 MiB in all) and
   * an empty work directory for one test.
   */
  async function makeOverlay(name: string): Promise<{ overlay: string; work: string }> {
    const overlay = join(dir, `${name}.qcow2`);
    await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=1.1', '-b', base, '-F', 'qcow2', overlay]);
    const work = join(dir, `work-${name}`);
    await mkdir(work);
    return { overlay, work };
  }

  /** The overlay served over NBD with discard, as copy mode serves it, and the appliance's drive for it. */
  async function serveOverlay(overlay: string, work: string): Promise<{ served: ServedImage; drive: ApplianceDrive }> {
    const served = await serveImage(ctx, { file: overlay, format: 'qcow2', readOnly: false, discard: true, dir: work });
    return { served, drive: { socketPath: served.socketPath, exportName: served.exportName, readOnly: false, discard: true } };
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-it-appliance-'));
    base = join(dir, 'base.qcow2');
    await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
    await qemuIo(base, `write -P 0x5a 0 ${16 * MiB}`, false);
    const found = await findAppliance(ctx);
    if (!found.available) throw new Error(`libguestfs is installed but unusable here: ${found.reason}`);
    host = found.host;
  }, LAUNCH_MS);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('says which package to install when guestfish is missing', async () => {
    const bin = join(dir, 'bin-without-guestfish');
    await mkdir(bin);
    await symlink('/usr/bin/setpriv', join(bin, 'setpriv'));
    const found = await checkHost(ctx, { ...process.env, PATH: bin });
    expect(found).toEqual({ available: false, reason: missingLibguestfsReason() });
  });

  it('remembers the check: a second look launches nothing', async () => {
    const started = Date.now();
    const again = await checkHost(ctx, process.env);
    expect(again).toMatchObject({ available: true, host: { env: host.env } });
    expect(again.available && again.host.checkLaunchMs).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it(
    'runs commands, fails with libguestfs\' error line, discards through to the overlay; disposal leaves nothing',
    async () => {
      const { overlay, work } = await makeOverlay('session');
      const processes: ServingProcess[] = [];
      let footprint: Footprint;
      {
        const { served, drive } = await serveOverlay(overlay, work);
        await using _served = served;
        {
          await using appliance = await launchAppliance(ctx, { host, drives: [drive], workDir: work, onProcess: (p) => processes.push(p) });
          expect(processes.map((p) => [p.tool, p.pid])).toEqual([['guestfish', appliance.pid]]);
          expect(await appliance.run('blockdev-getsize64', '/dev/sda')).toBe(`${64 * MiB}\n`);
          const failed = await appliance.run('mount', '/dev/sda', '/').catch((err: unknown) => err);
          expect(failed).toBeInstanceOf(ApplianceCommandError);
          expect((failed as Error).message).toMatch(/^mount: .*wrong fs type/);
          // The session goes on after a failure; an argument with quotes and blanks arrives whole.
          expect(await appliance.run('echo', 'a "quoted" arg | !ls')).toBe('a "quoted" arg | !ls\n');
          await appliance.run('part-init', '/dev/sda', 'mbr');
          await appliance.run('part-add', '/dev/sda', 'p', String((4 * MiB) / 512), String((8 * MiB) / 512 - 1));
          await appliance.run('blkdiscard', '/dev/sda1');
          footprint = await footprintOf(appliance.pid);
          expect(footprint.pids.length).toBeGreaterThan(1);
          expect(await libguestfsFilesUnder(work)).not.toEqual([]);
        }
        expect(await leftAfter(footprint, 0)).toEqual([]);
        expect(await libguestfsFilesUnder(work)).toEqual([]);
        expect((await processes[0]?.exited)?.byOwner).toBe(true);
      }
      // The discarded partition reads as zero in the overlay; the rest of the pattern is kept.
      expect(await qemuIo(overlay, `read -P 0 ${4 * MiB} ${4 * MiB}`)).toMatch(/read 4194304\/4194304 bytes/);
      expect(await qemuIo(overlay, `read -P 0x5a ${MiB} ${3 * MiB}`)).toMatch(/read 3145728\/3145728 bytes/);
      expect(await qemuIo(overlay, `read -P 0x5a ${8 * MiB} ${8 * MiB}`)).toMatch(/read 8388608\/8388608 bytes/);
      expect(await readdir(work)).toEqual([]);
    },
    LAUNCH_MS,
  );

  it(
    'an abort during the launch stops it and leaves nothing',
    async () => {
      const { overlay, work } = await makeOverlay('abort');
      const { served, drive } = await serveOverlay(overlay, work);
      await using _served = served;
      const abort = new AbortController();
      let guestfish: number | undefined;
      const launching = launchAppliance(makeContext(undefined, abort.signal), {
        host,
        drives: [drive],
        workDir: work,
        onProcess: (p) => (guestfish = p.pid),
      });
      const outcome = launching.catch((err: unknown) => err);
      try {
        // Abort once the appliance's qemu runs: the launch is then under way.
        let footprint: Footprint | undefined;
        for (let i = 0; i < 1200 && !footprint; i++) {
          if (guestfish !== undefined && (await qemuChildren(guestfish)).length > 0) footprint = await footprintOf(guestfish);
          else await delay(50);
        }
        expect(footprint, 'the launch started no qemu within a minute').toBeDefined();
        abort.abort();
        // Within seconds: the launch is stopped, not waited for (under TCG it takes 15-60 s).
        expect(await leftAfter(footprint as Footprint, 10_000)).toEqual([]);
        expect(await outcome).toMatchObject({ code: 'CANCELLED' });
        expect((await readdir(work)).filter((n) => !n.startsWith('qsd-'))).toEqual([]);
      } finally {
        abort.abort();
        const launched = await outcome;
        if (launched && typeof launched === 'object' && Symbol.asyncDispose in launched) await (launched as AsyncDisposable)[Symbol.asyncDispose]();
      }
    },
    LAUNCH_MS,
  );

  it(
    'a SIGKILL of sparsify leaves no appliance process, socket or directory within seconds',
    async () => {
      const { overlay, work } = await makeOverlay('sigkill');
      const dist = join(REPO_ROOT, 'dist');
      // The built modules, as the CLI runs them (npm test builds first).
      const script = `
        const { makeContext } = await import(${JSON.stringify(join(dist, 'context.js'))});
        const { findAppliance } = await import(${JSON.stringify(join(dist, 'engines/appliance/host.js'))});
        const { launchAppliance } = await import(${JSON.stringify(join(dist, 'engines/appliance/guestfish.js'))});
        const { serveImage } = await import(${JSON.stringify(join(dist, 'qemu/storage-daemon.js'))});
        const [overlay, work] = process.argv.slice(1);
        const ctx = makeContext();
        const found = await findAppliance(ctx);
        const served = await serveImage(ctx, { file: overlay, format: 'qcow2', readOnly: false, discard: true, dir: work });
        const drive = { socketPath: served.socketPath, exportName: served.exportName, readOnly: false, discard: true };
        const appliance = await launchAppliance(ctx, { host: found.host, drives: [drive], workDir: work });
        await appliance.run('ping-daemon');
        console.log(JSON.stringify({ guestfish: appliance.pid, daemon: served.pid }));
        setInterval(() => {}, 1000);
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, overlay, work], { stdio: ['ignore', 'pipe', 'inherit'] });
      let footprint: Footprint = { pids: [], dirs: [] };
      try {
        const line = await new Promise<string>((resolve, reject) => {
          createInterface({ input: child.stdout }).once('line', resolve);
          child.once('exit', (code) => reject(new Error(`the child exited (${code}) before the appliance was up`)));
        });
        const ready = JSON.parse(line) as { guestfish: number; daemon: number };
        footprint = await footprintOf(ready.guestfish);
        expect(footprint.pids.length).toBeGreaterThan(1);
        child.kill('SIGKILL');
        const left = await leftAfter({ pids: [...footprint.pids, ready.daemon], dirs: footprint.dirs }, 10_000);
        expect(left).toEqual([]);
        expect(await libguestfsFilesUnder(work)).toEqual([]);
      } finally {
        child.kill('SIGKILL');
        // A failed test must not leave its appliance running either.
        for (const pid of footprint.pids.filter(isAlive)) process.kill(pid, 'SIGKILL');
        for (const d of footprint.dirs) await rm(d, { recursive: true, force: true });
      }
    },
    LAUNCH_MS,
  );
});
