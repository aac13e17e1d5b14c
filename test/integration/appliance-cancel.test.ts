/**
 * SIGINT (Ctrl-C) and SIGTERM at several moments of the appliance phase, with --engine appliance
 * forcing it: as the launch begins, while the appliance's qemu boots, while it mounts and trims a
 * volume, and right after (the copy); and an error while it trims (the overlay's daemon killed).
 * Each leaves nothing behind: no process the run started (qemu, guestfish, the
 * daemons), no socket, no libguestfs or sparsify directory (libguestfs' temporary directory lives
 * in the run's TMPDIR, private to the case; its socket directory, under /tmp for root, is found in
 * the appliance's command line), no `.guestfs-UID` cache in the TMPDIR, no partial output; the
 * input is unchanged and the exit is the documented one for cancellation.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, orphanLoops, spawnCli, waitForExit } from '../helpers/cli.js';
import { stillRunning, watchDescendants, type SeenProcess } from '../helpers/process-tree.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

/** Launching under TCG takes 15–60 s here; the whole run, up to a few minutes under load. */
const MOMENT_TIMEOUT_MS = 300_000;
/** How long a cancelled run may take to clean up (stopping the appliance included). */
const CLEANUP_TIMEOUT_MS = 60_000;

/** What the run has shown so far: its stdout and the processes below it. */
interface Seen {
  readonly stdout: string;
  readonly procs: readonly SeenProcess[];
}

/**
 * What a case does at its moment: send sparsify a signal, or make the run fail for real by
 * SIGKILLing the qemu-storage-daemon that serves the overlay (the appliance's disk).
 */
const KILL_OVERLAY_DAEMON = 'kill-overlay-daemon';
type Act = NodeJS.Signals | typeof KILL_OVERLAY_DAEMON;
const isOverlayDaemon = (p: SeenProcess) => /^qemu-storage-daemon .*overlay\.qcow2/.test(p.cmdline);

/** The appliance's qemu (libguestfs boots its appliance.d kernel; a KVM probe's qemu does not). */
const isAppliance = (p: SeenProcess) => /qemu-system.*appliance\.d/.test(p.cmdline);

/**
 * libguestfs' per-run directories named in the command lines seen (its socket directory: under the
 * case's XDG_RUNTIME_DIR for a user, under /tmp for root, outside the case's directories).
 */
function libguestfsDirs(procs: readonly SeenProcess[]): string[] {
  const dirs = new Set<string>();
  for (const p of procs) for (const m of p.cmdline.matchAll(/(\/[^\s,=]*\/libguestfs[A-Za-z0-9]{6})\//g)) dirs.add(m[1]!);
  return [...dirs];
}

/** The text after the last occurrence of `line` in `out`, or undefined before it appears. */
function after(out: string, line: string): string | undefined {
  const at = out.lastIndexOf(line);
  return at < 0 ? undefined : out.slice(at + line.length);
}

/**
 * The moments, each a predicate on what the run has shown: the appliance engine's steps are
 * --machine-readable status lines (src/engines/appliance/session.ts, volume.ts).
 */
const MOMENTS: Record<string, (s: Seen) => boolean> = {
  // The launch step has begun: libguestfs is being started (its check, supermin, guestfish).
  'launch-step': (s) => s.stdout.includes('Launch the libguestfs appliance'),
  // The appliance's qemu has started: it is booting (under TCG, for 15 s or more).
  'launch-qemu': (s) => s.procs.some(isAppliance),
  // The first volume is being mounted inside the appliance.
  mount: (s) => s.stdout.includes('Mount /dev/sda1 in the appliance'),
  // The second volume is being trimmed.
  trim: (s) => s.stdout.includes('Run fstrim on /dev/sda2'),
  // Copy progress past zero after the last trim: the appliance's work is over.
  after: (s) => /^[1-9]\d*\/\d+$/m.test(after(s.stdout, 'Run fstrim on /dev/sda2') ?? ''),
};

describeIntegration('Ctrl-C and SIGTERM in the appliance phase: nothing left behind, input intact', { tools: ['guestfish', 'qemu-img', 'qemu-storage-daemon'], root: true }, () => {
  let image: BuiltImage;
  let dir: string;
  let inputSha: string;

  beforeAll(async () => {
    image = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs'], size: '1G', fillMiB: 16, garbageMiB: 64, seed: 17 });
    inputSha = await sha256File(image.imagePath);
    dir = await makeRunTmp();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Starts a copy, does `act` `delayMs` after `moment`, and checks what is left. */
  async function interruptAt(name: string, moment: string, act: Act, delayMs: number): Promise<void> {
    const tmp = join(dir, `tmp-${name}`);
    const runtime = join(dir, `run-${name}`);
    await mkdir(tmp);
    await mkdir(runtime, { mode: 0o700 });
    const out = join(dir, `out-${name}.qcow2`);
    const othersLoops = await orphanLoops();
    const child = spawnCli(['--engine', 'appliance', '--machine-readable', '--tmp', tmp, '--format', 'raw', '--convert', 'qcow2', '--compress', image.imagePath, out], {
      TMPDIR: tmp,
      XDG_RUNTIME_DIR: runtime,
    });
    const exited = waitForExit(child);
    const watch = watchDescendants(child.pid!);
    let stdout = '';
    child.stdout!.on('data', (d) => (stdout += String(d)));
    let done = false;
    void exited.then(() => (done = true));
    const deadline = Date.now() + MOMENT_TIMEOUT_MS;
    while (!done && !MOMENTS[moment]!({ stdout, procs: watch.seen() })) {
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      expect(done, `the run ended before the moment '${moment}':\n${stdout.slice(-1000)}`).toBe(false);
      expect(Date.now() <= deadline, `no moment '${moment}' within ${MOMENT_TIMEOUT_MS} ms:\n${stdout.slice(-1000)}`).toBe(true);
      await new Promise((r) => setTimeout(r, delayMs));
      if (act === KILL_OVERLAY_DAEMON) {
        const daemons = watch.seen().filter(isOverlayDaemon);
        expect(daemons, 'no qemu-storage-daemon serving the overlay').toHaveLength(1);
        process.kill(daemons[0]!.pid, 'SIGKILL');
      } else child.kill(act);
      const r = await Promise.race([exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), CLEANUP_TIMEOUT_MS))]);
      expect(r, `sparsify still running ${CLEANUP_TIMEOUT_MS} ms after ${act}`).toBeDefined();
      expect(r!.exitCode, r!.stderr).toBe(1);
      expect(r!.stderr).toMatch(act === KILL_OVERLAY_DAEMON ? /qemu-storage-daemon serving .* died \(killed by SIGKILL\)/ : /quit \(\^C\) at user request/);
      const started = watch.stop();
      if (moment !== 'launch-step') {
        expect(started.filter(isAppliance), 'the appliance never ran').not.toEqual([]);
        expect(libguestfsDirs(started), "no libguestfs directory in the appliance's command line").not.toEqual([]);
      }
      expect(libguestfsDirs(started).filter((d) => existsSync(d))).toEqual([]);
      expect(stillRunning(started).map((p) => `${p.pid}: ${p.cmdline}`)).toEqual([]);
      expect(await leftoversUnder(tmp, othersLoops)).toEqual([]);
      expect(await leftoversUnder(runtime, othersLoops)).toEqual([]);
      expect((await readdir(dir)).filter((n) => n.includes(`out-${name}`))).toEqual([]);
      expect(await sha256File(image.imagePath)).toBe(inputSha);
    } finally {
      watch.stop();
      if (!done) child.kill('SIGKILL');
      await exited;
    }
  }

  const cases: [moment: string, act: Act, delayMs: number][] = [
    ['launch-step', 'SIGINT', 0],
    ['launch-qemu', 'SIGTERM', 0],
    ['launch-qemu', 'SIGINT', 5000],
    ['mount', 'SIGTERM', 0],
    ['trim', 'SIGINT', 0],
    ['trim', 'SIGTERM', 200],
    ['after', 'SIGINT', 0],
    // An error, not a cancellation: the appliance's disk goes away while it trims.
    ['trim', KILL_OVERLAY_DAEMON, 0],
  ];
  it.each(cases)('%s: %s (+%i ms)', async (moment, act, delayMs) => {
    await interruptAt(`${moment}-${act}-${delayMs}`, moment, act, delayMs);
  }, MOMENT_TIMEOUT_MS + 2 * CLEANUP_TIMEOUT_MS);
});
