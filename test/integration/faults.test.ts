/**
 * The fault-injection suite (issue 7): signals at seeded points of each phase, SIGKILL followed
 * by the user's next run, a killed qemu-storage-daemon, full and read-only directories, an input
 * changed under a copy, and two runs on one input. Each case checks what a user would: the exit
 * code and the one error line, the input, that no output or partial is left, and that no
 * process, loop device, mount, socket or temporary file of the run remains.
 *
 * The seed is printed; SPARSIFY_FAULT_SEED=N replays a schedule. The summary line goes to
 * .cache/faults/summary.txt (every case's problems to .cache/faults/cases.json).
 */
import { execFile } from 'node:child_process';
import { access, appendFile, open, rm, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  CaseCheck, FaultTally, TimedRun, faultSeed, fillUp, leftoversOf, makeCaseDirs, mountTmpfs, findDaemon, runToEnd, scrub,
  type CaseDirs, type DaemonRole, type RunEnd,
} from '../helpers/faults.js';
import { prng, randInt } from '../helpers/copy-fakes.js';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { makeRunTmp } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File, verifyImage } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const TOOLS = ['qemu-img', 'qemu-storage-daemon', 'nbdfuse', 'losetup', 'fstrim', 'mount', 'umount'];
const CASE_TIMEOUT_MS = 240_000;
const RETRIES = 3;
const CANCELLED = /quit \(\^C\) at user request/;

const seed = faultSeed();
const random = prng(seed);
/** A seeded point in [0, max) of a phase, in whole percent. */
const point = (max = 0.9): number => Math.floor(random() * max * 100) / 100;

type Scenario = 'copy' | 'mount' | 'compress' | 'compress-qemu' | 'inplace';
/** The command line of each scenario; `out` is a path without extension. */
const SCENARIOS: Record<Scenario, { args: (input: string, out: string) => string[]; ext: string }> = {
  copy: { args: (i, o) => ['-f', 'raw', i, `${o}.raw`], ext: '.raw' },
  mount: { args: (i, o) => ['-f', 'raw', '--engine', 'mount', '--convert', 'qcow2', i, `${o}.qcow2`], ext: '.qcow2' },
  compress: { args: (i, o) => ['-f', 'raw', '--compress', '--convert', 'qcow2', i, `${o}.qcow2`], ext: '.qcow2' },
  // An -o option sparsify's own writer leaves to qemu: the output is served by qemu-storage-daemon.
  'compress-qemu': { args: (i, o) => ['-f', 'raw', '--compress', '--convert', 'qcow2', '-o', 'lazy_refcounts=off', i, `${o}.qcow2`], ext: '.qcow2' },
  inplace: { args: (i) => ['--in-place', '-f', 'raw', i], ext: '' },
};

/** A phase: from the status line that opens it to the one that closes it, in one scenario. */
const PHASES = {
  examine: { scenario: 'copy', from: /^Examine source disk$/, to: /^Copy to destination/ },
  'mount pass': { scenario: 'mount', from: /^Create overlay/, to: /^Copy to destination/ },
  copy: { scenario: 'copy', from: /^Copy to destination/, to: /completed/ },
  'compressed copy': { scenario: 'compress', from: /^Copy to destination/, to: /completed/ },
  'compressed copy through qemu': { scenario: 'compress-qemu', from: /^Copy to destination/, to: /completed/ },
  'in place': { scenario: 'inplace', from: /^Examine disk$/, to: /completed/ },
} as const satisfies Record<string, { scenario: Scenario; from: RegExp; to: RegExp }>;
type PhaseName = keyof typeof PHASES;
const PHASE_NAMES = Object.keys(PHASES) as PhaseName[];

interface FaultCase {
  readonly name: string;
  /** Where in its phase the fault lands (a share of the phase's length), for timed faults. */
  readonly at?: number;
  readonly run: (c: CaseCheck, dirs: CaseDirs, at: number) => Promise<void>;
}

// The schedule depends on the seed alone (drawn in a fixed order), so a seed replays it.
const cases: FaultCase[] = [];
for (const phase of PHASE_NAMES) {
  for (const [signal, group] of [['SIGTERM', false], ['SIGINT', true]] as const) {
    const at = point();
    const to = group ? ' to the process group (Ctrl-C)' : '';
    cases.push({ name: `${signal}${to} in ${phase} at ${pct(at)}`, at, run: (c, d, a) => signalCase(c, d, phase, signal, group, a) });
  }
}
for (const phase of PHASE_NAMES) {
  const at = point();
  cases.push({ name: `SIGKILL in ${phase} at ${pct(at)}, then the same command again`, at, run: (c, d, a) => sigkillCase(c, d, phase, a) });
}
for (const [phase, role] of [['copy', 'input'], ['compressed copy through qemu', 'output'], ['mount pass', 'overlay'], ['in place', 'input']] as const) {
  const at = point(0.7);
  cases.push({ name: `the ${role} qemu-storage-daemon killed in ${phase} at ${pct(at)}`, at, run: (c, d, a) => daemonCase(c, d, phase, role, a) });
}
{
  const small = randInt(random, 64, 192) * KiB;
  const tight = randInt(random, 208, 336) * KiB;
  const at = point();
  cases.push({ name: `ENOSPC: TMPDIR a ${small / KiB} KiB tmpfs (--engine mount)`, run: (c, d) => tmpSpaceCase(c, d, small) });
  cases.push({ name: `ENOSPC: TMPDIR a ${tight / KiB} KiB tmpfs (--engine mount)`, run: (c, d) => tmpSpaceCase(c, d, tight) });
  cases.push({ name: `ENOSPC: TMPDIR filled up in mount pass at ${pct(at)}`, at, run: (c, d, a) => tmpSpaceCase(c, d, 64 * MiB, a) });
}
for (const format of ['raw', 'qcow2'] as const) {
  const size = randInt(random, 1, 7) * MiB;
  cases.push({ name: `ENOSPC: ${format} output on a ${size / MiB} MiB tmpfs`, run: (c, d) => outSpaceCase(c, d, format, size) });
  cases.push({ name: `read-only output directory (${format})`, run: (c, d) => readOnlyCase(c, d, format) });
}
for (const change of ['truncated', 'appended', 'rewritten'] as const) {
  const at = point();
  cases.push({ name: `input ${change} in compressed copy at ${pct(at)}`, at, run: (c, d, a) => inputChangeCase(c, d, change, a) });
}
for (const second of ['copy', 'inplace'] as const) {
  const at = point();
  cases.push({ name: `a ${second === 'copy' ? 'copy' : '--in-place run'} started on the input of a copy in examine at ${pct(at)}`, at, run: (c, d, a) => twoRunsCase(c, d, second, a) });
}

function pct(fraction: number): string {
  return `${Math.round(fraction * 100)}%`;
}

let image: BuiltImage;
/** The suite's own copy of the fixture: other suites may hold the shared one (a writable qemu-io probe makes it IN_USE). */
let suiteInput: string;
let suiteDir: string;
let inputSha: string;
const phaseMs = new Map<PhaseName, number>();
const tally = new FaultTally(seed);

describeIntegration('fault injection', { tools: TOOLS, root: true }, () => {
  beforeAll(async () => {
    console.log(`fault injection: seed ${seed} (SPARSIFY_FAULT_SEED=${seed} replays this schedule)`);
    image = await buildImage({ layout: 'gpt', fs: ['ext4', 'swap'], size: '512M', fillMiB: 16, garbageMiB: 64, seed: 11 });
    suiteDir = await makeRunTmp();
    suiteInput = join(suiteDir, 'input.raw');
    await copyImage(image.imagePath, suiteInput);
    inputSha = await sha256File(suiteInput);
    await calibrate();
  });
  afterAll(async () => {
    await rm(suiteDir, { recursive: true, force: true });
    console.log(await tally.write());
  });

  it.each(cases)('$name', async ({ name, at, run }) => {
    let c = new CaseCheck(name);
    // A run faster than the calibration run may be over before a late point: try earlier points.
    // The last try lands at the very start of the phase.
    for (let point = at, tries = 0; tries < RETRIES; point = point === undefined ? point : tries === RETRIES - 2 ? 0 : point / 2, tries++) {
      if (tries > 0) console.log(`${name}: the run had ended before the fault; again at ${pct(point ?? 0)}`);
      c = new CaseCheck(name);
      const dirs = await makeCaseDirs();
      try {
        await run(c, dirs, point ?? 0);
      } catch (err) {
        c.that(false, `the case itself failed: ${err instanceof Error ? err.stack : String(err)}`);
      } finally {
        await scrub(dirs.root);
      }
      if (c.injected || point === undefined) break;
    }
    const record = c.record();
    tally.add(record);
    expect(record.injected, 'the fault was not injected (the run had already ended)').toBe(true);
    expect(record.problems).toEqual([]);
  }, CASE_TIMEOUT_MS);
});

/**
 * Fault-free runs of each scenario: how long each phase lasts here, to place faults inside it.
 * The shortest of CALIBRATION_RUNS counts: one slow run (a busy disk) would place faults after
 * the end of every later, faster run.
 */
async function calibrate(): Promise<void> {
  for (let i = 0; i < CALIBRATION_RUNS; i++) await calibrateOnce();
  console.log(`fault injection: phase lengths ${[...phaseMs].map(([n, ms]) => `${n} ${Math.round(ms)} ms`).join(', ')}`);
}

const CALIBRATION_RUNS = 2;

async function calibrateOnce(): Promise<void> {
  for (const scenario of Object.keys(SCENARIOS) as Scenario[]) {
    const dirs = await makeCaseDirs();
    try {
      const run = start(scenario, await inputFor(dirs, scenario), dirs);
      const end = await run.end();
      if (end.exitCode !== 0) throw new Error(`calibration run (${scenario}) failed: ${end.stderr}`);
      for (const name of PHASE_NAMES.filter((n) => PHASES[n].scenario === scenario)) {
        const from = run.lineAt(PHASES[name].from);
        const to = run.lineAt(PHASES[name].to);
        if (from === undefined || to === undefined) throw new Error(`calibration run (${scenario}): no ${name} phase in ${end.stdout}`);
        phaseMs.set(name, Math.min(to - from, phaseMs.get(name) ?? Infinity));
      }
    } finally {
      await scrub(dirs.root);
    }
  }
}

function start(scenario: Scenario, input: string, dirs: CaseDirs): TimedRun {
  return new TimedRun(['--machine-readable', ...SCENARIOS[scenario].args(input, join(dirs.out, 'o'))], { TMPDIR: dirs.work });
}

function outputOf(scenario: Scenario, dirs: CaseDirs): string {
  return join(dirs.out, `o${SCENARIOS[scenario].ext}`);
}

/** The suite's input for copies (read-only for them); a private copy for anything that writes it. */
async function inputFor(dirs: CaseDirs, scenario: Scenario, privateCopy = false): Promise<string> {
  if (scenario !== 'inplace' && !privateCopy) return suiteInput;
  const path = join(dirs.root, 'disk.raw');
  await copyImage(suiteInput, path);
  return path;
}

/** Copy mode: the input's bytes are the fixture's. In place: every file identical and fsck clean. */
async function checkInput(c: CaseCheck, input: string, inPlace: boolean): Promise<void> {
  if (!inPlace) {
    c.input((await sha256File(input)) === inputSha, `sha256 of ${input} differs`);
    return;
  }
  const verdict = await verifyImage(input, 'raw', image.manifestPath);
  c.input(verdict.ok, verdict.problems.join('; '));
}

/** Waits for the phase to open, then for the seeded share of its calibrated length; true if the run still goes. */
async function reach(run: TimedRun, phase: PhaseName, at: number): Promise<boolean> {
  if ((await run.waitForLine(PHASES[phase].from)) === undefined) return false;
  await sleep(at * phaseMs.get(phase)!);
  return run.running;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function signalCase(c: CaseCheck, dirs: CaseDirs, phase: PhaseName, signal: NodeJS.Signals, group: boolean, at: number): Promise<void> {
  const { scenario } = PHASES[phase];
  const input = await inputFor(dirs, scenario);
  const run = start(scenario, input, dirs);
  c.injected = await reach(run, phase, at);
  run.kill(signal, group);
  const end = await run.end();
  // A signal that arrives once the work is done cannot cancel it (in place: after the last volume).
  // Node restores the default action while it exits, so such a signal may still end the process.
  const done = /completed/.test(end.stdout);
  if (done) c.succeeded(end.signal === signal ? { ...end, exitCode: 0 } : end);
  else c.failed(end, CANCELLED);
  await checkInput(c, input, scenario === 'inplace');
  c.found(await leftoversOf(dirs, [], done ? [outputOf(scenario, dirs)] : []));
}

async function sigkillCase(c: CaseCheck, dirs: CaseDirs, phase: PhaseName, at: number): Promise<void> {
  const { scenario } = PHASES[phase];
  const input = await inputFor(dirs, scenario);
  const run = start(scenario, input, dirs);
  c.injected = await reach(run, phase, at);
  run.kill('SIGKILL');
  await run.end();
  const output = outputOf(scenario, dirs);
  // A kill after the rename leaves a complete output: the next run replaces it (--overwrite).
  const killedAfterRename = scenario !== 'inplace' && (await exists(output));
  // Processes may still be dying (their parent-death signal); files, mounts and loops are debris.
  const debris = (await leftoversOf(dirs, [], killedAfterRename ? [output] : [])).filter((l) => !l.startsWith('process'));
  const again = await runToEnd([...(killedAfterRename ? ['--overwrite'] : []), ...SCENARIOS[scenario].args(input, join(dirs.out, 'o'))], { TMPDIR: dirs.work });
  c.succeeded(again, 'the same command after the kill');
  if (debris.length > 0) {
    c.that(/^sparsify: (warning|notice)/m.test(again.stderr), `the next run said nothing about the debris it found: ${debris.join('; ')}`);
  }
  await checkInput(c, input, scenario === 'inplace');
  c.found(await leftoversOf(dirs, [], scenario === 'inplace' ? [] : [output]), 'left after the next run');
}

async function daemonCase(c: CaseCheck, dirs: CaseDirs, phase: PhaseName, role: DaemonRole, at: number): Promise<void> {
  const { scenario } = PHASES[phase];
  const input = await inputFor(dirs, scenario);
  const run = start(scenario, input, dirs);
  c.injected = await reach(run, phase, at);
  const pid = c.injected ? await findDaemon(run, dirs.work, role) : undefined;
  c.injected &&= pid !== undefined;
  if (pid !== undefined) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      // The daemon ended between being found and the kill: the run no longer needed it (a copy
      // takes well under a second here). Not injected: the case is tried again, earlier.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      c.injected = false;
    }
  }
  const end = await run.end();
  const output = outputOf(scenario, dirs);
  // A daemon killed once the run no longer needed it (every read done) may end in success; then
  // the output must be right.
  if (end.exitCode === 0 && scenario !== 'inplace') {
    c.succeeded(end);
    const verdict = await verifyImage(output, scenario === 'copy' ? 'raw' : 'qcow2', image.manifestPath);
    c.that(verdict.ok, `success claimed after the daemon was killed, but the output is wrong: ${verdict.problems.join('; ')}`);
  } else if (end.exitCode !== 0) {
    c.failed(end, /qemu-storage-daemon/);
    c.that(!/not an NBD server|broke the protocol/.test(end.stderr), `a killed daemon reported as a protocol error: ${end.stderr.trim()}`);
  } else {
    c.succeeded(end);
  }
  await checkInput(c, input, scenario === 'inplace');
  c.found(await leftoversOf(dirs, [], end.exitCode === 0 ? [output] : []));
}

/**
 * A tmpfs of `sizeBytes` as TMPDIR: too small for the run, the run fails with "no space". With
 * `at`, it is filled up at that point of the mount pass: a run that needed no more room after
 * that may succeed, with a right output and no volume given up for the lack of space.
 */
async function tmpSpaceCase(c: CaseCheck, dirs: CaseDirs, sizeBytes: number, at?: number): Promise<void> {
  await mountTmpfs(dirs.work, sizeBytes);
  const run = start('mount', suiteInput, dirs);
  let filler: string | undefined;
  if (at !== undefined) {
    c.injected = await reach(run, 'mount pass', at);
    filler = await fillUp(dirs.work);
  }
  const end = await run.end();
  const output = outputOf('mount', dirs);
  if (at !== undefined && end.exitCode === 0) {
    c.succeeded(end);
    c.that(!/cannot be mounted/.test(end.stderr), `a full temporary directory passed off as an unmountable filesystem: ${end.stderr.trim()}`);
    const verdict = await verifyImage(output, 'qcow2', image.manifestPath);
    c.that(verdict.ok, `the output: ${verdict.problems.join('; ')}`);
  } else {
    c.failed(end, /no space/i);
  }
  await checkInput(c, suiteInput, false);
  c.found(await leftoversOf(dirs, [dirs.work], [...(filler ? [filler] : []), ...(end.exitCode === 0 && at !== undefined ? [output] : [])]));
}

async function outSpaceCase(c: CaseCheck, dirs: CaseDirs, format: 'raw' | 'qcow2', sizeBytes: number): Promise<void> {
  await mountTmpfs(dirs.out, sizeBytes);
  const end = await runToEnd(['-f', 'raw', '--convert', format, suiteInput, join(dirs.out, `o.${format}`)], { TMPDIR: dirs.work });
  c.failed(end, /no space left/i);
  await checkInput(c, suiteInput, false);
  c.found(await leftoversOf(dirs, [dirs.out]));
}

async function readOnlyCase(c: CaseCheck, dirs: CaseDirs, format: 'raw' | 'qcow2'): Promise<void> {
  await mountTmpfs(dirs.out, MiB, true);
  const output = join(dirs.out, `o.${format}`);
  const end = await runToEnd(['-f', 'raw', '--convert', format, suiteInput, output], { TMPDIR: dirs.work });
  c.failed(end, /read-only/i);
  // The user named the output; a raw errno, a tool's text or the partial's name is not for them.
  c.that(!/\bE[A-Z]{3,}\b:|exited with code|\.partial/.test(end.stderr), `raw error text: ${end.stderr.trim()}`);
  c.that(end.stderr.includes(dirs.out), `the error does not name the output: ${end.stderr.trim()}`);
  await checkInput(c, suiteInput, false);
  c.found(await leftoversOf(dirs, [dirs.out]));
}

async function inputChangeCase(c: CaseCheck, dirs: CaseDirs, change: 'truncated' | 'appended' | 'rewritten', at: number): Promise<void> {
  const input = await inputFor(dirs, 'compress', true);
  const run = start('compress', input, dirs);
  c.injected = await reach(run, 'compressed copy', at);
  const sizeBytes = image.manifest.virtualSizeBytes;
  if (change === 'truncated') await truncate(input, sizeBytes / 2);
  if (change === 'appended') await appendFile(input, Buffer.alloc(MiB, 0xa5));
  if (change === 'rewritten') {
    const fh = await open(input, 'r+');
    await fh.write(Buffer.alloc(4 * KiB, 0xa5), 0, 4 * KiB, sizeBytes / 2);
    await fh.close();
  }
  const end: RunEnd = await run.end();
  const output = outputOf('compress', dirs);
  // A change that lands after the run's last check of the input (between that check and the
  // exit) cannot be seen and cannot reach the output: success, and the output must be right.
  if (end.exitCode === 0) {
    c.succeeded(end);
    const verdict = await verifyImage(output, 'qcow2', image.manifestPath);
    c.that(verdict.ok, `success claimed after the input changed, but the output is wrong: ${verdict.problems.join('; ')}`);
  } else {
    c.failed(end, /chang/i);
  }
  c.found(await leftoversOf(dirs, [], end.exitCode === 0 ? [output] : []));
}

/**
 * A second run started on the input of a running compressed copy: another copy may read it too
 * (both succeed, the same content), an in-place run is refused (IN_USE); the first copy is not
 * disturbed.
 */
async function twoRunsCase(c: CaseCheck, dirs: CaseDirs, second: 'copy' | 'inplace', at: number): Promise<void> {
  const input = await inputFor(dirs, 'compress', second === 'inplace');
  const first = start('compress', input, dirs);
  c.injected = await reach(first, 'examine', at);
  // The first copy now takes well under a second: so that the runs surely overlap, it is held
  // (SIGSTOP to sparsify alone) once its input daemon serves the image, and let go when the
  // second run has ended. Its daemon keeps running, holding the image as it would mid-copy.
  c.injected &&= (await findDaemon(first, dirs.work, 'input')) !== undefined;
  first.kill('SIGSTOP');
  const other = join(dirs.out, 'b.raw');
  const run = new TimedRun(['--machine-readable', ...(second === 'copy' ? ['-f', 'raw', input, other] : ['--in-place', '-f', 'raw', input])], { TMPDIR: dirs.work });
  const end2 = await run.end();
  c.injected &&= first.running;
  first.kill('SIGCONT');
  const end1 = await first.end();
  const output = outputOf('compress', dirs);
  c.succeeded(end1, 'the first copy');
  const verdict = await verifyImage(output, 'qcow2', image.manifestPath);
  c.that(verdict.ok, `the first copy's output: ${verdict.problems.join('; ')}`);
  if (second === 'copy') {
    c.succeeded(end2, 'the second copy');
    const same = await execFileAsync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', output, other]).then(() => true, () => false);
    c.that(same, 'the two copies differ');
  } else {
    c.failed(end2, /in use/i, 'the in-place run');
  }
  await checkInput(c, input, false);
  c.found(await leftoversOf(dirs, [], second === 'copy' ? [output, other] : [output]));
}
