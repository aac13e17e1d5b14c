/** `sparsify ARGS` for the --shrink suites: stdin closed (libguestfs' qemu would read it) and a timeout an appliance under TCG fits in. */
import { execFile } from 'node:child_process';
import { CLI } from './cli.js';

/** A shrink run's whole time under TCG, with room: the slowest (the Debian guest) takes a few minutes. */
export const SHRINK_RUN_MS = 10 * 60_000;

export interface ShrinkRunEnd {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built CLI; never throws on a non-zero exit. */
export function runShrinkCli(args: readonly string[], env: Record<string, string> = {}): Promise<ShrinkRunEnd> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: SHRINK_RUN_MS - 60_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      resolve({ exitCode: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}
