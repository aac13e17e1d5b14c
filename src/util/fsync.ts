/**
 * fsync by path. Success is reported only for bytes on disk: a file a daemon wrote is synced
 * by its path, and a new file's name is durable only once its directory is synced too.
 */
import { open } from 'node:fs/promises';

/** fsync the file at `path` (opened read-only: fsync needs no write access). */
export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync the directory `dir`, which makes the names created or renamed in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  await fsyncFile(dir);
}
