/**
 * Who owns a run's files: a pid alone is reused, so a process is named by its pid, its start
 * time since boot, the boot and the pid namespace. Read from /proc (proc(5)).
 */
import { readFile, readlink } from 'node:fs/promises';

/** A process, told apart from a later one with the same pid. */
export interface ProcessIdentity {
  readonly pid: number;
  /** /proc/PID/stat field 22: clock ticks after boot when the process started. */
  readonly startTicks: number;
  /** /proc/sys/kernel/random/boot_id: a pid from an earlier boot names nothing now. */
  readonly bootId: string;
  /** readlink /proc/self/ns/pid: pids of another namespace cannot be looked up from here. */
  readonly pidNamespace: string;
}

/** Whether the process a record names still runs; 'unknown' when it cannot be seen from here. */
export type Liveness = 'alive' | 'dead' | 'unknown';

/**
 * The start time of `pid` in clock ticks after boot, or undefined when no such process runs
 * (a zombie counts as gone: it has exited, only its parent has not reaped it yet).
 */
export async function readStartTicks(pid: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  const ticks = Number(fields[22 - 3]);
  return Number.isSafeInteger(ticks) ? ticks : undefined;
}

/** This process's identity. */
export async function readSelfIdentity(): Promise<ProcessIdentity> {
  const [startTicks, bootId, pidNamespace] = await Promise.all([
    readStartTicks(process.pid),
    readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((t) => t.trim()),
    readlink('/proc/self/ns/pid'),
  ]);
  return { pid: process.pid, startTicks: startTicks ?? -1, bootId, pidNamespace };
}

/** Decodes an identity written by {@link readSelfIdentity} (JSON), or undefined when it is not one. */
export function parseProcessIdentity(text: string): ProcessIdentity | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const v = value as Partial<Record<keyof ProcessIdentity, unknown>>;
  const ok =
    Number.isSafeInteger(v.pid) && (v.pid as number) > 0 && Number.isSafeInteger(v.startTicks) && typeof v.bootId === 'string' && typeof v.pidNamespace === 'string';
  return ok ? { pid: v.pid as number, startTicks: v.startTicks as number, bootId: v.bootId as string, pidNamespace: v.pidNamespace as string } : undefined;
}

/** Whether `owner` still runs, as seen by `self`. */
export async function livenessOf(owner: ProcessIdentity, self: ProcessIdentity): Promise<Liveness> {
  if (owner.bootId !== self.bootId) return 'dead';
  if (owner.pidNamespace !== self.pidNamespace) return 'unknown';
  const ticks = await readStartTicks(owner.pid);
  return ticks !== undefined && ticks === owner.startTicks ? 'alive' : 'dead';
}

/** Whether any process with `pid` runs in this pid namespace. */
export async function pidExists(pid: number): Promise<boolean> {
  return (await readStartTicks(pid)) !== undefined;
}
