/**
 * SIGINT (Ctrl-C) and SIGTERM at several moments of the appliance phase, with --engine appliance
 * forcing it: while the appliance launches, while it mounts and trims a volume, and right after
 * (the copy). Each leaves nothing behind: no process the run started (qemu, guestfish, the
 * daemons), no socket, no libguestfs or sparsify directory (libguestfs' temporary and socket
 * directories live in the run's TMPDIR and XDG_RUNTIME_DIR, both private to the case), no
 * partial output; the input is unchanged and the exit is the documented one for cancellation.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { leftoversUnder, makeRunTmp, spawnCli, waitForExit } from '../helpers/cli.js';
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

/** The appliance's qemu (libguestfs boots its appliance.d kernel; a KVM probe's qemu does not). */
const isAppliance = (p: SeenProcess) => /qemu-system.*appliance\.d/.test(p.cmdline);

/** The moments, each a predicate on what the run has shown. */
const MOMENTS: Record<string, (s: Seen) => boolean> = {
  // The appliance's qemu has started: it is booting (under TCG, for 15 s or more).
  launch: (s) => s.procs.some(isAppliance),
  // The step of the image's second volume has begun: the appliance is up, the first volume
  // done, the second being mounted and trimmed.
  trim: (s) => /\/dev\/sda2\s*$/m.test(s.stdout),
  // Copy progress past zero: the volume pass is over.
  after: (s) => /^[1-9]\d*\/\d+$/m.test(s.stdout),
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

  /** Starts a copy, sends `signal` `delayMs` after `moment`, and checks what is left. */
  async function interruptAt(name: string, moment: string, signal: NodeJS.Signals, delayMs: number): Promise<void> {
    const tmp = join(dir, `tmp-${name}`);
    const runtime = join(dir, `run-${name}`);
    await mkdir(tmp);
    await mkdir(runtime, { mode: 0o700 });
    const out = join(dir, `out-${name}.qcow2`);
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
      child.kill(signal);
      const r = await Promise.race([exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), CLEANUP_TIMEOUT_MS))]);
      expect(r, `sparsify still running ${CLEANUP_TIMEOUT_MS} ms after ${signal}`).toBeDefined();
      expect(r!.exitCode, r!.stderr).toBe(1);
      expect(r!.stderr).toMatch(/quit \(\^C\) at user request/);
      const started = watch.stop();
      expect(started.filter(isAppliance), 'the appliance never ran').not.toEqual([]);
      expect(stillRunning(started).map((p) => `${p.pid}: ${p.cmdline}`)).toEqual([]);
      expect(await leftoversUnder(tmp)).toEqual([]);
      expect(await leftoversUnder(runtime)).toEqual([]);
      expect((await readdir(dir)).filter((n) => n.includes(`out-${name}`))).toEqual([]);
      expect(await sha256File(image.imagePath)).toBe(inputSha);
    } finally {
      watch.stop();
      if (!done) child.kill('SIGKILL');
      await exited;
    }
  }

  const cases: [moment: string, signal: NodeJS.Signals, delayMs: number][] = [
    ['launch', 'SIGINT', 0],
    ['launch', 'SIGTERM', 3000],
    ['trim', 'SIGINT', 0],
    ['trim', 'SIGTERM', 300],
    ['after', 'SIGINT', 0],
    ['after', 'SIGTERM', 0],
  ];
  it.each(cases)('%s: %s (+%i ms)', async (moment, signal, delayMs) => {
    await interruptAt(`${moment}-${signal}-${delayMs}`, moment, signal, delayMs);
  }, MOMENT_TIMEOUT_MS + 2 * CLEANUP_TIMEOUT_MS);
});
