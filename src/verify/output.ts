/** --verify in copy mode: the finished output, served read-only, against what the copier read. */
import type { RunContext } from '../context.js';
import type { ExtentSet } from '../disk/extent-set.js';
import type { BlockSource } from '../disk/types.js';
import type { VerifyReport } from '../report/types.js';
import { findCopyMismatch, type CopyMismatch } from './compare.js';
import { verifyError } from './error.js';
import { openImage } from './serve.js';
import { corruptForTest } from './test-hook.js';

/** The output to check and what it must hold. */
export interface CopiedOutput {
  /** The output file (still under its temporary name), flushed and closed by the copier. */
  readonly path: string;
  readonly format: string;
  /** What the copier read: the input served read-only, or the overlay. */
  readonly source: BlockSource;
  /** The copier's skip set: ranges that must read as zero. */
  readonly zeroed: ExtentSet;
  /** Where the daemon's socket goes. */
  readonly workDir: string;
}

const REMOVED = 'the output was removed; this is a bug in sparsify or a fault of the host: please report it with the output of -v';

/** Checks every byte of the output; throws VERIFY_FAILED naming the first wrong byte. */
export async function verifyCopiedOutput(ctx: RunContext, o: CopiedOutput): Promise<VerifyReport> {
  const started = performance.now();
  await corruptForTest(ctx, o.path, o.format, o.workDir);
  await using image = await openImage(ctx, { file: o.path, format: o.format, dir: o.workDir });
  const sizeBytes = o.source.sizeBytes;
  if (image.device.sizeBytes !== sizeBytes) {
    throw verifyError(`--verify: the output is ${image.device.sizeBytes} bytes, the source ${sizeBytes}`, REMOVED);
  }
  const zeroed = o.zeroed.clip(sizeBytes);
  const mismatch = await findCopyMismatch({ source: o.source, output: image.device, zeroed, signal: ctx.signal });
  if (mismatch) throw verifyError(describe(mismatch), REMOVED);
  return {
    checkedBytes: sizeBytes,
    identicalBytes: sizeBytes - zeroed.totalBytes,
    zeroBytes: zeroed.totalBytes,
    ms: Math.round(performance.now() - started),
    ok: true,
    notVerified: [],
  };
}

function describe(m: CopyMismatch): string {
  return m.kind === 'differs'
    ? `--verify: the output differs from the source at byte offset ${m.offsetBytes}`
    : `--verify: the output is not zero at byte offset ${m.offsetBytes}, inside a range sparsify made zero`;
}
