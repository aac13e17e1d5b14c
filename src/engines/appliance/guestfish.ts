/**
 * One libguestfs appliance, driven by a long-lived guestfish that reads commands on its stdin.
 *
 * Why a co-process over stdin and not `guestfish --listen` + `--remote`:
 * - `--listen` forks and the parent exits: the server is a grandchild that has lost the
 *   parent-death signal setpriv gave (PR_SET_PDEATHSIG is cleared on fork; util/run.ts), so a
 *   SIGKILLed sparsify would leave it and its qemu running.
 * - Its socket is always `/tmp/.guestfish-EUID/socket-PID` (fish/rc.c), whatever TMPDIR says:
 *   it cannot be kept under the run's work directory, and a killed server leaves it behind.
 * - A `--remote` client gets only the exit status: the error text goes to the server's stderr.
 * A co-process needs none of that. Its stdin is a pipe only sparsify holds: when sparsify dies,
 * even by SIGKILL, guestfish reads end-of-file after the command at hand and quits the way it
 * quits normally (libguestfs unmounts, syncs, stops qemu, removes its directories), and the
 * qemu-storage-daemon serving its drives dies with sparsify, which ends a disk command at once.
 * guestfish gets no parent-death signal on purpose: killed outright, it would leave libguestfs'
 * socket directory behind (for root always under /tmp, lib/tmpdirs.c), and its qemu would
 * live on until libguestfs' recovery process notices (it polls every 2 s).
 *
 * Framing: each command is sent as `-CMD "ARG"…` (the `-` keeps guestfish going after an
 * error), then `echo MARK-N` (stdout; guestfish flushes stdout after every command) and an
 * unknown command `MARK_N` whose complaint lands on stderr after the command's own errors. Both
 * marks seen, everything before them is that command's: stdout is the result, an error line on
 * stderr the failure. Arguments are always double-quoted (fish.c parse_quoted_string), so no
 * `|` pipe, `~` expansion or `!` shell escape can come from a path or a label.
 *
 * libguestfs' qemu never reads this stdin (launch-direct.c gives it the console socket), but
 * the commands libguestfs runs while launching may: nothing but commands is ever written.
 * LIBGUESTFS_TMPDIR, TMPDIR and XDG_RUNTIME_DIR (the socket directory of a non-root user) are a
 * directory under workDir, removed on disposal.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import type { RunContext } from '../../context.js';
import { SparsifyError, cancelledError, throwIfCancelled } from '../../errors.js';
import { makeWorkDir } from '../../host/work-dir.js';
import { describeExit, type DaemonExit } from '../../qemu/daemon.js';
import type { ServingProcess } from '../../qemu/storage-daemon.js';
import { missingTool } from '../../util/run.js';
import type { ApplianceHost } from './host.js';
import { FrameReader, commandFrame, driveCommand } from './guestfish-protocol.js';

/** One disk of the appliance: an NBD export of the run. */
export interface ApplianceDrive {
  /** The disk as the run serves it: the NBD export of the overlay (copy) or of the image (in place). */
  readonly socketPath: string;
  readonly exportName: string;
  readonly readOnly: boolean;
  /** discard requests go through to the export (a trimmed cluster reads back as zero). */
  readonly discard: boolean;
}

/** A launched appliance; disposing stops it and removes its files. */
export interface Appliance extends AsyncDisposable {
  /** Runs one guestfish command (e.g. run('mount', '/dev/sda1', '/')); resolves with its stdout; rejects with an Error whose message is libguestfs' error line. */
  run(command: string, ...args: string[]): Promise<string>;
  /** guestfish's pid. */
  readonly pid: number;
}

/** Options of {@link launchAppliance}. */
export interface LaunchOptions {
  readonly host: ApplianceHost;
  readonly drives: readonly ApplianceDrive[];
  /** A private directory of the run; the appliance's temporary files live in a directory under it. */
  readonly workDir: string;
  readonly onProcess?: (p: ServingProcess) => void;
  /** Adds a scratch disk of this size (the host check launches over one). */
  readonly scratchBytes?: number;
}

/** A command that failed inside the appliance: the message is libguestfs' error line. */
export class ApplianceCommandError extends SparsifyError {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    message: string,
    readonly stderr: string,
  ) {
    super('TOOL_FAILED', message);
  }
}

/** A unix socket path fits in 107 bytes; libguestfs adds `/libguestfsXXXXXX/guestfsd.sock`. */
const MAX_RUNTIME_DIR = 107 - '/libguestfsXXXXXX/guestfsd.sock'.length;
/** How long guestfish gets to quit on end-of-file (sync, stop qemu under TCG) before it is killed. */
const QUIT_GRACE_MS = 30_000;
const STDERR_TAIL_LINES = 20;
const STOP_POLL_MS = 250;

/**
 * Launches one appliance with these drives. Its process is told to `onProcess`; its temporary
 * files live under workDir; disposal (and an abort of ctx.signal, and sparsify's own death)
 * leaves no process, socket or directory.
 */
export async function launchAppliance(ctx: RunContext, options: LaunchOptions): Promise<Appliance> {
  throwIfCancelled(ctx.signal);
  const dir = await makeWorkDir(options.workDir);
  const session = new Session(ctx, dir);
  try {
    await session.start(options);
    for (const drive of options.drives) await session.run(...driveCommand(drive));
    if (options.scratchBytes) await session.run('add-drive-scratch', String(options.scratchBytes));
    await session.run('run');
    throwIfCancelled(ctx.signal);
    await session.noteLibguestfsDirs();
    return { pid: session.pid, run: (command, ...args) => session.run(command, ...args), [Symbol.asyncDispose]: () => session.stop() };
  } catch (err) {
    await session.stop();
    throw ctx.signal.aborted ? cancelledError(ctx.signal) : err;
  }
}

/** The guestfish co-process and what it owns. */
class Session {
  pid = -1;
  #child: ReturnType<typeof startGuestfish> | undefined;
  #exited: Promise<DaemonExit> = Promise.resolve({ exitCode: undefined, signal: undefined, stderr: '' });
  #frames = new FrameReader(randomBytes(6).toString('hex'));
  #queue: Promise<unknown> = Promise.resolve();
  #busy = 0;
  #done = false;
  #byOwner = false;
  #stderrTail: string[] = [];
  /** libguestfs' own temporary directories, seen in qemu's command line (root's are under /tmp). */
  #libguestfsDirs = new Set<string>();
  /** A short XDG_RUNTIME_DIR under /tmp when workDir is too long for a socket path. */
  #shortDir: string | undefined;
  #stopping: Promise<void> | undefined;
  readonly #onAbort = (): void => void this.stop();

  constructor(
    private readonly ctx: RunContext,
    private readonly dir: string,
  ) {}

  async start(options: LaunchOptions): Promise<void> {
    const tmp = join(this.dir, 'tmp');
    await mkdir(tmp);
    const runtimeDir = Buffer.byteLength(this.dir) <= MAX_RUNTIME_DIR ? this.dir : await makeWorkDir('/tmp');
    if (runtimeDir !== this.dir) this.#shortDir = runtimeDir;
    const env = { ...options.host.env, LIBGUESTFS_TMPDIR: tmp, TMPDIR: tmp, XDG_RUNTIME_DIR: runtimeDir };
    const child = (this.#child = startGuestfish(this.ctx, env, this.dir));
    this.pid = child.pid ?? -1;
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => this.#frames.stdout(chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.#keepStderr(chunk);
      this.#frames.stderr(chunk);
    });
    child.stdin?.on('error', () => undefined); // EPIPE once guestfish has gone: its exit says why
    this.#exited = child.then((r) => {
      this.#done = true;
      const exit: DaemonExit = { exitCode: r.exitCode, signal: r.signal, stderr: this.#stderrTail.join('\n'), byOwner: this.#byOwner };
      this.#frames.close(r.failed && r.exitCode === undefined && r.signal === undefined ? r.cause : new SparsifyError('TOOL_FAILED', describeExit('guestfish', exit)));
      return exit;
    });
    if (child.pid === undefined) {
      const exit = await this.#exited;
      throw missingTool('guestfish', new Error(exit.stderr));
    }
    options.onProcess?.({ tool: 'guestfish', pid: child.pid, exited: this.#exited });
    if (this.ctx.signal.aborted) this.#onAbort();
    else this.ctx.signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Runs one command after the ones before it. */
  run(command: string, ...args: string[]): Promise<string> {
    const result = this.#queue.then(async () => {
      throwIfCancelled(this.ctx.signal);
      if (this.#done || this.#stopping) throw new SparsifyError('INTERNAL', `the appliance has been stopped (${command})`);
      this.#busy++;
      try {
        const { n, reply } = this.#frames.expect(command);
        this.#child?.stdin?.write(commandFrame(this.#frames.token, n, command, args));
        const { stdout, error } = await reply;
        if (error !== undefined) throw new ApplianceCommandError(command, args, error.line, error.stderr);
        return stdout;
      } catch (err) {
        throw this.ctx.signal.aborted ? cancelledError(this.ctx.signal) : err;
      } finally {
        this.#busy--;
      }
    });
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** Remembers libguestfs' directories from its qemu's command line, to remove them if it is killed. */
  async noteLibguestfsDirs(): Promise<void> {
    for (const pid of await childrenOf(this.pid)) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      for (const m of cmdline.matchAll(/(\/[^\0,=]*\/libguestfs[A-Za-z0-9]{6})\//g)) if (m[1]) this.#libguestfsDirs.add(m[1]);
    }
  }

  /**
   * Stops guestfish: a command in flight (a launch) is ended by stopping its qemu, then
   * end-of-file makes guestfish quit as usual; one that does not within the grace is killed,
   * and the directories libguestfs could not remove are removed here. Idempotent.
   */
  stop(): Promise<void> {
    return (this.#stopping ??= this.#stop());
  }

  async #stop(): Promise<void> {
    this.ctx.signal.removeEventListener('abort', this.#onAbort);
    const child = this.#child;
    if (child && !this.#done) {
      this.#byOwner = true;
      await this.noteLibguestfsDirs();
      child.stdin?.end();
      const deadline = Date.now() + QUIT_GRACE_MS;
      while (!this.#done && Date.now() < deadline) {
        // A command in flight (a launch, a trim) ends when its qemu does; a launch may start
        // its qemu (or supermin, or qemu-img) after the first look, so look again.
        if (this.#busy > 0) await signalChildren(this.pid, 'SIGTERM');
        await Promise.race([this.#exited, delay(STOP_POLL_MS, undefined, { ref: false })]);
      }
      if (!this.#done) {
        this.ctx.log.debug(`guestfish ${this.pid} did not quit within ${QUIT_GRACE_MS} ms; killing it`);
        await signalChildren(this.pid, 'SIGKILL');
        child.kill('SIGKILL');
      }
    }
    const exit = await this.#exited;
    if (exit.signal !== undefined || exit.exitCode !== 0) await this.noteLibguestfsDirs();
    for (const d of this.#libguestfsDirs) await rm(d, { recursive: true, force: true });
    if (this.#shortDir) await rm(this.#shortDir, { recursive: true, force: true });
    await rm(this.dir, { recursive: true, force: true });
  }

  #keepStderr(chunk: string): void {
    this.#stderrTail.push(...chunk.split('\n').filter((l) => l !== ''));
    this.#stderrTail.splice(0, Math.max(0, this.#stderrTail.length - STDERR_TAIL_LINES));
  }
}

/** guestfish with a pipe for commands; its own process group, so a terminal's ^C reaches only sparsify. */
function startGuestfish(ctx: RunContext, env: Record<string, string>, cwd: string) {
  const args = ['--no-progress-bars'];
  ctx.log.trace(['guestfish', ...args]);
  return execa('guestfish', args, {
    env,
    extendEnv: true,
    cwd,
    detached: true,
    cleanup: false,
    reject: false,
    buffer: false,
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
  });
}

/** The pids whose parent is `pid` (this kernel has no /proc/PID/task/TID/children). */
export async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) found.push(Number(name));
  }
  return found;
}

/** Sends `signal` to guestfish's children: qemu, libguestfs' recovery process, a launch's helpers. */
async function signalChildren(pid: number, signal: NodeJS.Signals): Promise<void> {
  for (const child of await childrenOf(pid)) {
    try {
      process.kill(child, signal);
    } catch {
      // gone meanwhile
    }
  }
}
