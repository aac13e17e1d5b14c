/**
 * The input must not change while a copy reads it. qemu's image lock keeps other qemu writers
 * out (qemu/storage-daemon.ts), but not `truncate`, `dd conv=notrunc` or a program that replaces
 * the file: those show in the input's size, times or inode, compared at the start and the end.
 */
import { stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { SparsifyError } from '../errors.js';

/** The input's stat at the start of a run. */
export interface InputSnapshot {
  readonly path: string;
  readonly stats: BigIntStats | undefined;
}

/** Records the input's size, times and inode (undefined stats when it does not exist: later steps say so). */
export async function snapshotInput(path: string): Promise<InputSnapshot> {
  return { path, stats: await stat(path, { bigint: true }).catch(() => undefined) };
}

/** Throws when the input is not the file it was at the start, byte count and times included. */
export async function assertInputUnchanged(snapshot: InputSnapshot): Promise<void> {
  const before = snapshot.stats;
  if (before === undefined) return;
  const after = await stat(snapshot.path, { bigint: true }).catch(() => undefined);
  const what = describeChange(before, after);
  if (what === undefined) return;
  throw new SparsifyError('IN_USE', `${snapshot.path} changed during the run (${what}); the output was not kept`, {
    hint: 'stop whatever writes to the input (a VM? a copy?) and run sparsify again',
  });
}

function describeChange(before: BigIntStats, after: BigIntStats | undefined): string | undefined {
  if (after === undefined) return 'it was removed';
  if (after.ino !== before.ino || after.dev !== before.dev) return 'it was replaced by another file';
  if (after.size !== before.size) return `size ${before.size} → ${after.size} bytes`;
  if (after.mtimeNs !== before.mtimeNs) return 'it was written to';
  if (after.ctimeNs !== before.ctimeNs) return 'its inode changed';
  return undefined;
}
