/**
 * Running sparsify (or a script) as an ordinary user from a test that runs as root: the system
 * user `sparsify-test`, created on first use, through `runuser`. runuser resets HOME, SHELL, USER
 * and LOGNAME (and may reset PATH), so the environment a run needs is passed through `env`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { CLI, type CliResult } from './cli.js';

/** The ordinary user the tests run as. */
export const TEST_USER = 'sparsify-test';

/** The user's uid and gid; creates the user (no home, no login shell) when missing. */
export function ensureTestUser(): { uid: number; gid: number } {
  try {
    execFileSync('id', ['-u', TEST_USER], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', TEST_USER]);
  }
  const id = (flag: string) => Number(execFileSync('id', [flag, TEST_USER], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** Runs argv as TEST_USER with `env` set on top of what runuser keeps (and `stdin` on its stdin, else none); never throws on a non-zero exit. */
export function runAsUser(argv: readonly string[], env: Readonly<Record<string, string>>, options: { cwd?: string; timeoutMs?: number; stdin?: string } = {}): Promise<CliResult> {
  const timeoutMs = options.timeoutMs ?? 100_000;
  const assignments = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return new Promise((resolve) => {
    execFile('runuser', ['-u', TEST_USER, '--', 'env', ...assignments, ...argv], {
      cwd: options.cwd,
      maxBuffer: 64 << 20,
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    }, (error, stdout, stderr) => {
      const exitCode = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      if (error?.killed) stderr += `\n[test] killed after ${timeoutMs} ms`;
      resolve({ exitCode, stdout, stderr });
    }).stdin?.end(options.stdin);
  });
}

/** Runs `sparsify ARGS` as TEST_USER, with `stdin` on its stdin when given. */
export function runCliAsUser(args: readonly string[], env: Readonly<Record<string, string>>, timeoutMs?: number, stdin?: string): Promise<CliResult> {
  return runAsUser([process.execPath, CLI, ...args], env, { timeoutMs, stdin });
}
