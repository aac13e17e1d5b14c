/**
 * The files a CLI run reports into (--json, --machine-readable=file:/fd:), opened and checked
 * before any work: a path or descriptor that cannot be written is a one-line error before the
 * input is read, and neither may be the input or the output (same inode, or the same path once
 * symbolic links are resolved), which they would clobber.
 */
import { constants, fstatSync, writeSync, type Stats } from 'node:fs';
import { lstat, open, realpath, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { MachineReadableTarget, Options } from '../options.js';
import { pathError } from '../util/errno.js';
import { formatJsonReport } from './json.js';
import type { LineSink } from './machine-readable.js';
import type { RunReport } from './types.js';

/** The report destinations of one run. */
export interface ReportFiles {
  readonly machine?: LineSink;
  /** Writes --json; fails when a machine-readable line could not be written. Called before the output is committed. */
  beforeCommit(report: RunReport): Promise<void>;
  /** Closes what was opened; after a failed run, removes the JSON file if this run created it. */
  close(failed: boolean): Promise<void>;
}

/** A file this run writes, and whether it made it. */
interface OpenedFile {
  readonly path: string;
  readonly fh: FileHandle;
  readonly created: boolean;
  readonly regular: boolean;
}

/** A path the reports must not be: what it resolves to, and its inode when it exists. */
interface Identity {
  readonly realPath: string;
  readonly st?: Stats;
}

/** Opens and checks --json and --machine-readable's file or descriptor; throws a one-line error. */
export async function openReportFiles(options: Options, machine: MachineReadableTarget | undefined): Promise<ReportFiles> {
  const guarded: [string, Identity][] = [[`the input image ${options.input}`, await identify(options.input)]];
  if (options.mode === 'copy') guarded.push([`the output image ${options.output}`, await identify(options.output)]);
  const json = options.jsonFile ? await openChecked(options.jsonFile, '--json', 'JSON report', guarded) : undefined;
  let lines: LineState;
  try {
    lines = await openLines(machine, guarded);
  } catch (err) {
    if (json) await release(json, true);
    throw err;
  }
  return {
    ...(lines.sink ? { machine: lines.sink } : {}),
    async beforeCommit(report) {
      if (lines.failure) throw lines.failure;
      if (json) await writeJson(json, report);
    },
    async close(failed) {
      if (json) await release(json, failed);
      if (lines.file) await release(lines.file, false);
    },
  };
}

/** Where machine-readable lines go, and the first write that failed. */
interface LineState {
  sink?: LineSink;
  file?: OpenedFile;
  failure?: unknown;
  /** Fires at the first failed write (the reader is gone). */
  readonly failed: AbortController;
}

async function openLines(target: MachineReadableTarget | undefined, guarded: [string, Identity][]): Promise<LineState> {
  const state: LineState = { failed: new AbortController() };
  if (!target) return state;
  if (target.kind === 'stream') {
    const stream = target.stream === 'stdout' ? process.stdout : process.stderr;
    state.sink = { write: (line) => void stream.write(line) };
    return state;
  }
  let fd: number;
  let name: string;
  if (target.kind === 'file') {
    state.file = await openChecked(target.path, '--machine-readable=file:', 'machine-readable output', guarded);
    if (state.file.regular) await state.file.fh.truncate(0);
    fd = state.file.fh.fd;
    name = target.path;
  } else {
    fd = target.fd;
    name = `fd:${fd}`;
    checkDescriptor(fd, name, guarded);
  }
  // Synchronous writes: a failure is seen at once (no stream 'error' event to go unhandled).
  state.sink = {
    write(line) {
      if (state.failure) return;
      try {
        writeSync(fd, line);
      } catch (err) {
        state.failure = pathError(err, 'machine-readable output', name);
        state.failed.abort(state.failure);
      }
    },
  };
  return state;
}

/** A descriptor must be open for writing: a write of zero bytes answers EBADF otherwise. */
function checkDescriptor(fd: number, name: string, guarded: [string, Identity][]): void {
  try {
    const st = fstatSync(fd);
    refuseGuarded('--machine-readable', name, { realPath: name, st }, guarded);
    writeSync(fd, Buffer.alloc(0));
  } catch (err) {
    throw pathError(err, 'machine-readable output', name);
  }
}

async function openChecked(path: string, option: string, role: 'JSON report' | 'machine-readable output', guarded: [string, Identity][]): Promise<OpenedFile> {
  refuseGuarded(option, path, await identify(path), guarded);
  const existed = (await lstat(path).catch(() => undefined)) !== undefined;
  // No O_TRUNC: an existing file is left as it is until the run has something to write.
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT).catch((err: unknown) => {
    throw pathError(err, role, path);
  });
  const st = await fh.stat();
  return { path, fh, created: !existed, regular: st.isFile() };
}

function refuseGuarded(option: string, path: string, id: Identity, guarded: [string, Identity][]): void {
  for (const [what, other] of guarded) {
    if (!sameFile(id, other)) continue;
    throw new SparsifyError('USAGE', `${option} ${path} is ${what}; it would be overwritten`, {
      hint: 'choose another file for the report',
    });
  }
}

function sameFile(a: Identity, b: Identity): boolean {
  if (a.realPath === b.realPath) return true;
  if (!a.st || !b.st) return false;
  if (a.st.isBlockDevice() && b.st.isBlockDevice()) return a.st.rdev === b.st.rdev;
  return a.st.dev === b.st.dev && a.st.ino === b.st.ino;
}

async function identify(path: string): Promise<Identity> {
  const st = await stat(path).catch(() => undefined);
  const realPath = await realpath(path).catch(async () => join(await realpath(dirname(path)).catch(() => dirname(path)), basename(path)));
  return st ? { realPath, st } : { realPath };
}

/** A JSON report of its own (a batch's): opened now, written once, removed after a failed run if this run made it. */
export interface JsonReportFile {
  write(text: string): Promise<void>;
  close(failed: boolean): Promise<void>;
}

/**
 * Refuses (USAGE, one line) a --json `path` that is one of `images` ([what, path]: a batch's
 * inputs and outputs, known once its domains are read). The file opened before is not written
 * until the end, so nothing was clobbered yet.
 */
export async function refuseReportOverImages(path: string, images: readonly (readonly [string, string])[]): Promise<void> {
  const guarded: [string, Identity][] = [];
  for (const [what, image] of images) guarded.push([what, await identify(image)]);
  refuseGuarded('--json', path, await identify(path), guarded);
}

/** A batch's --machine-readable destination: its sink, the first write that failed, and its closing. */
export interface MachineLinesFile {
  readonly sink: LineSink;
  /** Fires at the first write that fails: a batch starts no further disk. */
  readonly failed: AbortSignal;
  failure(): unknown;
  close(): Promise<void>;
}

/**
 * Opens a batch's --machine-readable target once its images (`[what, path]`) are known, so a
 * file: target that is one of them is refused (one line) before it is truncated.
 */
export async function openMachineLinesFile(target: MachineReadableTarget, images: readonly (readonly [string, string])[]): Promise<MachineLinesFile> {
  const guarded: [string, Identity][] = [];
  for (const [what, image] of images) guarded.push([what, await identify(image)]);
  const lines = await openLines(target, guarded);
  return {
    sink: lines.sink!,
    failed: lines.failed.signal,
    failure: () => lines.failure,
    close: async () => {
      if (lines.file) await release(lines.file, false);
    },
  };
}

/** Opens `path` for --json as a single run does (one-line error now; no truncation until written). */
export async function openJsonReportFile(path: string): Promise<JsonReportFile> {
  const file = await openChecked(path, '--json', 'JSON report', []);
  return { write: (text) => writeText(file, text), close: (failed) => release(file, failed) };
}

async function writeJson(file: OpenedFile, report: RunReport): Promise<void> {
  await writeText(file, formatJsonReport(report));
}

async function writeText(file: OpenedFile, content: string): Promise<void> {
  const text = Buffer.from(content);
  try {
    if (file.regular) await file.fh.truncate(0);
    for (let done = 0; done < text.length; ) {
      done += (await file.fh.write(text, done, text.length - done, file.regular ? done : null)).bytesWritten;
    }
    if (file.regular) await file.fh.sync();
  } catch (err) {
    throw pathError(err, 'JSON report', file.path);
  }
}

async function release(file: OpenedFile, remove: boolean): Promise<void> {
  await file.fh.close().catch(() => {});
  if (remove && file.created && file.regular) await rm(file.path, { force: true });
}
