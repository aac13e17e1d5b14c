/**
 * The one decider of what copy mode does with an input's backing chain (issue 13): none to
 * handle, flattened into a standalone output (the default), or kept with --keep-backing: OUT is
 * a qcow2 over IN's own backing file holding only what IN's top layer holds.
 */
import { dirname, isAbsolute } from 'node:path';
import { SparsifyError } from '../errors.js';
import { optionValue } from '../export/option-string.js';
import type { CopyOptions } from '../options.js';
import type { ImageInfo } from '../qemu/img.js';
import type { OutputDecision } from './output-format.js';

/** What happens to the input's backing chain. */
export type ChainHandling =
  | { readonly kind: 'none' }
  /** Every layer's data is copied into the output, which has no backing file. `base`: IN's backing file. */
  | { readonly kind: 'flattened'; readonly base: string }
  /**
   * OUT's backing file is `name` (as written in OUT's header; relative names resolve against
   * OUT's directory) of `format`; `base` is where it is (resolved).
   */
  | { readonly kind: 'kept'; readonly base: string; readonly name: string; readonly format: string };

type ChainChoices = Pick<CopyOptions, 'keepBacking' | 'input' | 'output' | 'shrink'>;
type ChainInfo = Pick<ImageInfo, 'format' | 'backingFile' | 'backingName' | 'backingFormat' | 'backingChain'>;

const HINT = "see 'sparsify --help'";

/**
 * Decides from the input's `qemu-img info` and the output decision. --keep-backing takes a
 * qcow2 over a backing file into a qcow2 that can hold zero clusters; anything else is an
 * error before any disk is served (exit 1).
 */
export function decideChain(options: ChainChoices, info: ChainInfo, output: OutputDecision): ChainHandling {
  const base = info.backingFile;
  if (!options.keepBacking) return base === undefined ? { kind: 'none' } : { kind: 'flattened', base };
  if (base === undefined) {
    if (options.keepBacking === 'where-chained') return { kind: 'none' };
    throw new SparsifyError('UNSUPPORTED', `--keep-backing: ${options.input} has no backing file, so there is no chain to keep`, {
      hint: 'remove --keep-backing',
    });
  }
  if (info.format !== 'qcow2') {
    throw new SparsifyError('UNSUPPORTED', `--keep-backing: ${options.input} is ${info.format}, and only a qcow2 over a backing file is kept as one`, {
      hint: 'remove --keep-backing: the copy is then flattened',
    });
  }
  if (output.format !== 'qcow2' || output.compress || output.ova) {
    const what = output.compress ? 'a compressed qcow2' : output.ova ? 'an OVA' : output.format;
    throw new SparsifyError('USAGE', `--keep-backing writes a qcow2 over ${base}, not ${what}`, { hint: 'remove --convert, --compress or --export, or remove --keep-backing' });
  }
  if (optionValue(output.createOptions, 'compat') === '0.10') {
    throw new SparsifyError('USAGE', '--keep-backing needs zero clusters, which a qcow2 with compat=0.10 cannot hold', { hint: 'remove -o compat=0.10' });
  }
  if (optionValue(output.createOptions, 'backing_file') !== undefined) {
    throw new SparsifyError('USAGE', '--keep-backing names the backing file itself; remove -o backing_file', { hint: HINT });
  }
  if (options.shrink) throw new SparsifyError('USAGE', 'you cannot use --keep-backing and --shrink options together: the backing file keeps its size', { hint: HINT });
  const format = info.backingFormat ?? info.backingChain[0]?.format;
  if (format === undefined) throw new SparsifyError('INTERNAL', `qemu-img gave no format for ${base}`);
  // The name as IN holds it, unless it is relative and OUT lies elsewhere: there it would name another file.
  const asNamed = info.backingName ?? base;
  const name = isAbsolute(asNamed) || dirname(options.input) === dirname(options.output) ? asNamed : base;
  return { kind: 'kept', base, name, format };
}
