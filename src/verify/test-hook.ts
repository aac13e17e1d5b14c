/**
 * TEST ONLY. With SPARSIFY_TEST_CORRUPT_OUTPUT_AT=<byte offset> set, the image about to be
 * checked by --verify (the output in copy mode, the image in place) gets the byte at that
 * offset of its virtual disk flipped just before the check, so a test can see the check fail.
 * Nothing but the tests sets it; it has no effect without --verify.
 */
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import { openImage } from './serve.js';

/** The variable's name. */
const CORRUPT_ENV = 'SPARSIFY_TEST_CORRUPT_OUTPUT_AT';

/** Flips the byte the test asked for, through a writable serve of the image (any format). */
export async function corruptForTest(ctx: RunContext, file: string, format: string, dir: string): Promise<void> {
  const value = process.env[CORRUPT_ENV];
  if (value === undefined) return;
  const offsetBytes = Number(value);
  await using image = await openImage(ctx, { file, format, dir, writable: true });
  const nbd = image.device;
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes >= nbd.sizeBytes) {
    throw new SparsifyError('USAGE', `${CORRUPT_ENV}=${value} is not a byte offset of the image`);
  }
  // Writes must cover whole minimum blocks; reads take any range.
  const min = nbd.info.blockSizes.minimumBytes;
  const start = offsetBytes - (offsetBytes % min);
  const block = Buffer.from(await nbd.read(start, Math.min(min, nbd.sizeBytes - start)));
  block[offsetBytes - start]! ^= 0xff;
  await nbd.write(start, block);
  await nbd.flush();
  ctx.log.debug(`${CORRUPT_ENV}: flipped the byte at offset ${offsetBytes} of ${file} (test only)`);
}
