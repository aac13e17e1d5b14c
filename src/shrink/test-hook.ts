/**
 * TEST ONLY. With SPARSIFY_TEST_SHRINK_ALTER_FILE=<device>:<path> set (`/dev/sda1:/docs/readme.txt`),
 * --shrink appends one byte to that file of that filesystem after the resize and the moves, just
 * before the files are listed again (src/shrink/files.ts), so a test can see the comparison fail.
 * Nothing but the tests sets it; it has no effect without --shrink or on a device not resized.
 */
import type { Appliance } from '../engines/appliance/guestfish.js';
import { SparsifyError } from '../errors.js';

/** The variable's name. */
const ALTER_ENV = 'SPARSIFY_TEST_SHRINK_ALTER_FILE';

/** Alters the file the test asked for when `device` is its filesystem; the filesystem is mounted at `mountpoint` for it and unmounted again. */
export async function alterFileForTest(g: Appliance, device: string, mountpoint: string): Promise<void> {
  const value = process.env[ALTER_ENV];
  if (value === undefined) return;
  const m = /^([^:]+):(\/.*)$/.exec(value);
  if (!m) throw new SparsifyError('USAGE', `${ALTER_ENV}=${value} is not DEVICE:/PATH`);
  if (m[1] !== device) return;
  await g.run('mount', device, mountpoint);
  try {
    await g.run('write-append', m[2]!, 'x');
  } finally {
    await g.run('umount-all');
  }
}
