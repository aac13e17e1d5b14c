/**
 * One mapping from the errno of a failed file operation to the one-line error a user can act
 * on, so that no call site prints Node's "EROFS: read-only file system, open '…'" text.
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { SparsifyError, type ErrorCode } from '../errors.js';

/** What the path was to the run; messages start with it ("output /x/y: …"). */
export type PathRole = 'output' | 'temporary directory' | 'JSON report' | 'machine-readable output' | 'file';

interface Explanation {
  readonly reason: string;
  readonly hint: string;
  readonly code?: 'NO_SPACE' | 'IN_USE';
}

function explain(errno: string, role: PathRole, path: string): Explanation | undefined {
  const elsewhere = role === 'temporary directory' ? 'use --tmp with another directory' : 'choose another path';
  switch (errno) {
    case 'ENOENT': {
      const dir = role === 'temporary directory' ? path : dirname(path);
      // A directory that exists but takes no new files (/proc) answers ENOENT too.
      return existsSync(dir)
        ? { reason: `no file can be created in ${dir}`, hint: `${elsewhere}, on a disk filesystem` }
        : { reason: `the directory ${dir} does not exist`, hint: `create it, or ${elsewhere}` };
    }
    case 'ENOTDIR':
      return { reason: 'a component of the path is not a directory', hint: `check the path, or ${elsewhere}` };
    case 'EACCES':
    case 'EPERM':
      return { reason: 'permission denied', hint: `${elsewhere} you may write to, or run as a user who may write here` };
    case 'EROFS':
      return { reason: 'the filesystem is read-only', hint: `${elsewhere} on a writable filesystem` };
    case 'ENAMETOOLONG':
      return { reason: 'the name is too long for the filesystem', hint: 'choose a shorter name' };
    case 'EISDIR':
      return { reason: 'it is a directory', hint: 'give a file name, not a directory' };
    case 'ELOOP':
      return { reason: 'too many levels of symbolic links', hint: 'check the symbolic links on the path' };
    case 'ENOSPC':
    case 'EDQUOT':
      return { code: 'NO_SPACE', reason: 'no space left', hint: `free some space there, or ${elsewhere} with more room` };
    case 'EBUSY':
      return { code: 'IN_USE', reason: 'it is in use (mounted, or held open by another program)', hint: 'unmount it or stop what uses it' };
    case 'EBADF':
      return {
        reason: 'not a file descriptor open for writing',
        hint: `open it for writing first (in a shell: ${path.replace(/^fd:/, '')}>FILE), or use file:FILE`,
      };
    case 'EEXIST':
      return { reason: 'it already exists', hint: 'remove it, or choose another name' };
    case 'EPIPE':
      return { reason: 'the reader went away (broken pipe)', hint: 'keep the reading end open until sparsify exits' };
    case 'EIO':
      return { reason: 'input/output error', hint: 'check the disk and the kernel log (dmesg)' };
    default:
      return undefined;
  }
}

/** The errno name of a Node system error ("ENOENT"), or undefined. */
export function errnoOf(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/**
 * Turns a failed file operation on `path` into a one-line SparsifyError naming the path and
 * saying what to do; returns `err` itself when it is not a system error this module knows.
 * `errno` names the failure when `err` does not carry it (a tool's text, a wrapped error).
 */
export function pathError(err: unknown, role: PathRole, path: string, errno = errnoOf(err)): unknown {
  if (err instanceof PathError && errno === undefined) return err;
  const known = errno ? explain(errno, role, path) : undefined;
  if (!errno || !known) return err;
  return new PathError(errno, known.code ?? 'BAD_PATH', `${role} ${path}: ${known.reason}`, { cause: err, hint: known.hint });
}

/** A SparsifyError made from an errno; keeps the errno so a caller can name another path for it. */
export class PathError extends SparsifyError {
  readonly errno: string;

  constructor(errno: string, code: ErrorCode, message: string, options: { cause?: unknown; hint?: string }) {
    super(code, message, options);
    this.errno = errno;
  }
}

/** The same failure, told about `path` in `role` (the output's name rather than its temporary name). */
export function renamePathError(err: unknown, role: PathRole, path: string): unknown {
  if (err instanceof PathError) return pathError(err.cause, role, path, err.errno);
  return pathError(err, role, path);
}

/**
 * The same for an error nobody explained (the CLI's last resort): Node's system errors carry
 * the path they failed on.
 */
export function explainSystemError(err: unknown): unknown {
  const path = typeof err === 'object' && err !== null ? (err as { path?: unknown }).path : undefined;
  return typeof path === 'string' ? pathError(err, 'file', path) : err;
}
