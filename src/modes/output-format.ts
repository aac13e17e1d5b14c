import { SparsifyError } from '../errors.js';
import { optionValue } from '../export/option-string.js';
import { mergeExportPreset, roundSizeUp } from '../export/presets.js';
import { OUTPUT_FORMATS, type CopyOptions, type OutputFormat } from '../options.js';

/** What copy mode writes: decided once, after qemu-img has read the input. */
export interface OutputDecision {
  readonly format: OutputFormat;
  /** `qemu-img create -o` options: the preset's merged with -o. */
  readonly createOptions?: string;
  readonly compress: boolean;
  /** The output's virtual size: the input's, or rounded up as the preset asks (--export azure). */
  readonly sizeBytes: number;
  /** Package the output as an OVA (an OVF descriptor and the vmdk in a tar). */
  readonly ova: boolean;
}

type OutputChoices = Pick<CopyOptions, 'convert' | 'compress' | 'outputOptions' | 'exportPreset' | 'ova'> & { readonly verify?: boolean };

/**
 * The one decider of copy mode's output: the --export preset merged with --convert, -o and
 * --compress (explicit wins, src/export/presets.ts), else the input's format (known only once
 * qemu-img has read the input); whether --compress, -o and --ova can be written in that format;
 * and the virtual size. The command line leaves all of this to the copy job, so the rule lives
 * here alone.
 */
export function decideOutput(options: OutputChoices, input: { readonly format: string; readonly virtualSizeBytes: number }): OutputDecision {
  const merged = mergeExportPreset(options);
  const format = merged.format ?? input.format;
  if (!isOutputFormat(format)) {
    throw new SparsifyError('UNSUPPORTED', `cannot write ${format} output`, {
      hint: `use --convert with one of ${OUTPUT_FORMATS.join(', ')}`,
    });
  }
  if (merged.compress && format !== 'qcow2') {
    throw new SparsifyError(
      'USAGE',
      format === 'raw'
        ? '--compress cannot be used for raw output.  Remove this option or use --convert qcow2.'
        : `--compress needs qcow2 output, not ${format}; use --convert qcow2`,
      { hint: "see 'sparsify --help'" },
    );
  }
  if (merged.createOptions !== undefined && format === 'raw') {
    throw new SparsifyError('USAGE', '-o cannot be used for raw output: a raw image has no creation options', {
      hint: 'remove -o, or add --convert qcow2 (or another format) for an image that takes them',
    });
  }
  if (merged.ova && !(format === 'vmdk' && isStreamOptimized(merged.createOptions))) {
    throw new SparsifyError('USAGE', '--ova packages a streamOptimized vmdk, which VMware imports; this output would not be one', {
      hint: 'remove --convert and -o subformat=… from the command line, or remove --ova',
    });
  }
  const sizeBytes = roundSizeUp(input.virtualSizeBytes, merged.sizeMultipleBytes);
  if (options.verify && (merged.ova || sizeBytes !== input.virtualSizeBytes)) {
    // src/verify/ compares an image of the input's size; an OVA is a tar, an Azure VHD is larger.
    throw new SparsifyError('USAGE', `--verify cannot check ${merged.ova ? 'an OVA' : 'an output larger than the input (--export azure)'} yet`, {
      hint: "remove --verify, and compare the disk with 'qemu-img compare' afterwards",
    });
  }
  return {
    format,
    ...(merged.createOptions !== undefined ? { createOptions: merged.createOptions } : {}),
    compress: merged.compress,
    sizeBytes,
    ova: merged.ova,
  };
}

/** The output format alone (see {@link decideOutput}). */
export function decideOutputFormat(options: OutputChoices, inputFormat: string): OutputFormat {
  return decideOutput(options, { format: inputFormat, virtualSizeBytes: 0 }).format;
}

/** -o subformat=streamOptimized (qemu's vmdk option; the last one given wins). */
export function isStreamOptimized(createOptions: string | undefined): boolean {
  return optionValue(createOptions, 'subformat') === 'streamOptimized';
}

function isOutputFormat(format: string): format is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(format);
}
