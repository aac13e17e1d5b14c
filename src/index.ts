/** The library API: the CLI is a thin layer over these. */
import type { RunContext } from './context.js';
import { sparsifyCopy } from './modes/copy.js';
import { sparsifyInPlace } from './modes/in-place.js';
import type { RunHooks } from './modes/run-hooks.js';
import type { RunUi } from './modes/ui.js';
import type { Options } from './options.js';
import type { RunReport } from './report/types.js';

export { SparsifyError, EXIT, exitCodeOf, type ErrorCode } from './errors.js';
export { makeContext, silentLogger, type Logger, type RunContext } from './context.js';
export type { Options, CopyOptions, InPlaceOptions } from './options.js';
export type { RunReport, VolumeReport } from './report/types.js';
export { silentUi, type RunUi } from './modes/ui.js';
export type { RunHooks } from './modes/run-hooks.js';
export { sparsifyCopy, sparsifyInPlace };

/**
 * Runs one validated set of options in its mode and returns the report; `hooks.onReport` gets
 * it before copy mode puts the output in place (a throw there leaves no output).
 */
export async function runSparsify(options: Options, ctx: RunContext, ui: RunUi, hooks: RunHooks = {}): Promise<RunReport> {
  if (options.mode === 'copy') return sparsifyCopy(options, ctx, ui, hooks);
  const report = await sparsifyInPlace(options, ctx, ui);
  await hooks.onReport?.(report);
  return report;
}
