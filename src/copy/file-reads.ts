import type { FileHandle } from 'node:fs/promises';
import { SparsifyError } from '../errors.js';

/**
 * Fills `dest` from `fh` at `positionBytes` with as many preads as it takes. The input is held
 * under qemu's shared lock, so no qemu writer changes it; a file that ends early was changed
 * anyway (by something that ignores the lock), and the output must not be kept.
 */
export async function preadFully(fh: FileHandle, path: string, dest: Uint8Array, positionBytes: number): Promise<void> {
  for (let done = 0; done < dest.byteLength; ) {
    const { bytesRead } = await fh.read(dest, done, dest.byteLength - done, positionBytes + done);
    if (bytesRead === 0) {
      throw new SparsifyError('IN_USE', `${path} changed during the run (it became shorter); the output was not kept`, {
        hint: 'stop whatever writes to the input and run again',
      });
    }
    done += bytesRead;
  }
}
