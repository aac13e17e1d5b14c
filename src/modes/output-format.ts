import { SparsifyError } from '../errors.js';
import { OUTPUT_FORMATS, type CopyOptions, type OutputFormat } from '../options.js';

/**
 * The one decider of copy mode's output format: --convert, else the input's format (known only
 * once qemu-img has read the input), and whether --compress and -o can be written in it. The
 * command line leaves all of this to the copy job, so the rule lives here alone.
 */
export function decideOutputFormat(options: Pick<CopyOptions, 'convert' | 'compress' | 'outputOptions'>, inputFormat: string): OutputFormat {
  const format = options.convert ?? inputFormat;
  if (!isOutputFormat(format)) {
    throw new SparsifyError('UNSUPPORTED', `cannot write ${format} output`, {
      hint: `use --convert with one of ${OUTPUT_FORMATS.join(', ')}`,
    });
  }
  if (options.compress && format !== 'qcow2') {
    throw new SparsifyError(
      'USAGE',
      format === 'raw'
        ? '--compress cannot be used for raw output.  Remove this option or use --convert qcow2.'
        : `--compress needs qcow2 output, not ${format}; use --convert qcow2`,
      { hint: "see 'sparsify --help'" },
    );
  }
  if (options.outputOptions !== undefined && format === 'raw') {
    throw new SparsifyError('USAGE', '-o cannot be used for raw output: a raw image has no creation options', {
      hint: 'remove -o, or add --convert qcow2 (or another format) for an image that takes them',
    });
  }
  return format;
}

function isOutputFormat(format: string): format is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(format);
}
