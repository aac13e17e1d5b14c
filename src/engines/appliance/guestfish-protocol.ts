/**
 * What sparsify writes to guestfish's stdin and how it reads the replies (see guestfish.ts for
 * why a co-process). Pure: no process here.
 *
 * Command n is written as three lines:
 *   -CMD "ARG" …            the `-` keeps a non-interactive guestfish going after an error
 *   echo @@sparsify-T-n     stdout: guestfish flushes stdout after every command (fish.c)
 *   -__sparsify_T_n         stderr: "__sparsify_T_n: unknown command", after CMD's own errors
 * T is random per appliance, so no output of a command can pass for a mark.
 */
import { SparsifyError } from '../../errors.js';
import type { ApplianceDrive } from './guestfish.js';

/** What one command gave: its stdout, and the failure when it failed. */
export interface Reply {
  readonly stdout: string;
  readonly error?: { readonly line: string; readonly stderr: string };
}

/** guestfish command names: letters, digits, '-' and '_' (never '!', '<!', '#' or a quote). */
const COMMAND_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** Quotes one argument for guestfish's command line: always double quotes, escapes for the rest. */
export function quoteArg(arg: string): string {
  let out = '"';
  for (const ch of arg) {
    const code = ch.codePointAt(0) ?? 0;
    if (code === 0) throw new SparsifyError('INTERNAL', 'a guestfish argument cannot hold a NUL byte');
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** The three lines that run `command args` as command `n` of the appliance with mark token `token`. */
export function commandFrame(token: string, n: number, command: string, args: readonly string[]): string {
  if (!COMMAND_NAME.test(command)) throw new SparsifyError('INTERNAL', `not a guestfish command name: ${JSON.stringify(command)}`);
  const line = [`-${command}`, ...args.map(quoteArg)].join(' ');
  return `${line}\necho ${stdoutMark(token, n)}\n-${stderrMark(token, n)}\n`;
}

/** The add-drive command for one NBD export of the run (format raw: never probe a guest's image). */
export function driveCommand(drive: ApplianceDrive): [string, ...string[]] {
  if (/['\s]/.test(drive.socketPath)) {
    // add-drive's server list is split on blanks and single quotes (fish.c parse_string_list).
    throw new SparsifyError('BAD_PATH', `${drive.socketPath}: libguestfs cannot take a socket path with blanks or quotes`, {
      hint: 'point --tmp (or TMPDIR) at a directory without blanks or quotes',
    });
  }
  const writable = !drive.readOnly;
  return [
    'add-drive',
    drive.exportName,
    'protocol:nbd',
    `server:unix:${drive.socketPath}`,
    'format:raw',
    `readonly:${drive.readOnly ? 'true' : 'false'}`,
    `discard:${drive.discard && writable ? 'enable' : 'disable'}`,
  ];
}

function stdoutMark(token: string, n: number): string {
  return `@@sparsify-${token}-${n}`;
}

function stderrMark(token: string, n: number): string {
  return `__sparsify_${token}_${n}`;
}

/**
 * The failure in a command's stderr, or undefined: libguestfs' error line (without its
 * "libguestfs: error: " prefix), or guestfish's own complaint (an unknown option, a bad
 * boolean, the wrong number of arguments). Warnings and debug output are not failures.
 */
export function errorLineOf(command: string, stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.replace(/^\*stdin\*:\d+: /, '').trim());
  const error = lines.find((l) => l.startsWith('libguestfs: error: '));
  if (error) return error.slice('libguestfs: error: '.length);
  return lines.find((l) => l.startsWith('guestfish: ') || l.startsWith('error: ') || l.startsWith(`${command}: `));
}

interface Pending {
  readonly n: number;
  readonly command: string;
  readonly resolve: (reply: Reply) => void;
  readonly reject: (err: unknown) => void;
}

/** Splits guestfish's stdout and stderr into the replies of the commands sent, in order. */
export class FrameReader {
  #out = '';
  #err = '';
  #next = 1;
  #pending: Pending[] = [];
  #closed: unknown;

  constructor(readonly token: string) {}

  /** Registers the next command; returns its number (for {@link commandFrame}) and its reply. */
  expect(command: string): { n: number; reply: Promise<Reply> } {
    const n = this.#next++;
    const reply = new Promise<Reply>((resolve, reject) => {
      if (this.#closed !== undefined) reject(this.#closed);
      else this.#pending.push({ n, command, resolve, reject });
    });
    return { n, reply };
  }

  stdout(chunk: string): void {
    this.#out += chunk;
    this.#settle();
  }

  stderr(chunk: string): void {
    this.#err += chunk;
    this.#settle();
  }

  /** guestfish has gone: every command still waiting fails with `reason`. */
  close(reason: unknown): void {
    this.#closed ??= reason;
    for (const p of this.#pending.splice(0)) p.reject(reason);
  }

  #settle(): void {
    for (let head = this.#pending[0]; head; head = this.#pending[0]) {
      const outMark = `${stdoutMark(this.token, head.n)}\n`;
      const outAt = this.#out.indexOf(outMark);
      const errAt = this.#err.indexOf(`${stderrMark(this.token, head.n)}:`);
      const errEnd = errAt < 0 ? -1 : this.#err.indexOf('\n', errAt);
      if (outAt < 0 || errEnd < 0) return;
      const stdout = this.#out.slice(0, outAt);
      const stderr = this.#err.slice(0, this.#err.lastIndexOf('\n', errAt) + 1);
      this.#out = this.#out.slice(outAt + outMark.length);
      this.#err = this.#err.slice(errEnd + 1);
      this.#pending.shift();
      const line = errorLineOf(head.command, stderr);
      head.resolve(line === undefined ? { stdout } : { stdout, error: { line, stderr } });
    }
  }
}
