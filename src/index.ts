/** The library API: the CLI is a thin layer over these. */
import type { RunContext } from './context.js';
import { sparsifyCopy } from './modes/copy.js';
import { sparsifyInPlace } from './modes/in-place.js';
import type { RunUi } from './modes/ui.js';
import type { Options } from './options.js';
import type { RunReport } from './report/types.js';

export { SparsifyError, EXIT, exitCodeOf, type ErrorCode } from './errors.js';
export { makeContext, silentLogger, type Logger, type RunContext } from './context.js';
export type { Options, CopyOptions, InPlaceOptions } from './options.js';
export type { RunReport, VolumeReport } from './report/types.js';
export { silentUi, type RunUi } from './modes/ui.js';
export { sparsifyCopy, sparsifyInPlace };

/** Runs one validated set of options in its mode and returns the report. */
export function runSparsify(options: Options, ctx: RunContext, ui: RunUi): Promise<RunReport> {
  return options.mode === 'copy' ? sparsifyCopy(options, ctx, ui) : sparsifyInPlace(options, ctx, ui);
}
