import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import type { InPlaceOptions } from '../options.js';
import type { RunReport } from '../report/types.js';
import type { RunUi } from './ui.js';

/** In-place mode (issue 3): gives free space back to the host in the image itself. */
export async function sparsifyInPlace(options: InPlaceOptions, _ctx: RunContext, _ui: RunUi): Promise<RunReport> {
  throw new SparsifyError('UNSUPPORTED', `--in-place is not implemented yet (${options.input} left untouched)`, {
    hint: 'use copy mode: sparsify IN OUT',
  });
}
