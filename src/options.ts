/**
 * The validated options of one run. The CLI builds exactly one of these after every
 * cross-option check (src/cli/parse-options.ts); mode modules never re-check them.
 */
import type { EngineId } from './engines/ids.js';
import type { ExportPresetName } from './export/presets.js';
import type { ShrinkMargin } from './shrink/margin.js';
import type { KeyRequest } from './keys/selector.js';

/** Formats sparsify can write (qemu's names). */
export const OUTPUT_FORMATS = ['raw', 'qcow2', 'vmdk', 'vdi', 'vhdx', 'vpc'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Where the copy-mode overlay lives (virt-sparsify's --tmp). */
export type TmpPlace =
  | { kind: 'dir'; path: string }
  | { kind: 'block-device'; path: string }
  | { kind: 'prebuilt'; path: string };

/** virt-sparsify's --check-tmpdir. */
export type CheckTmpdir = 'ignore' | 'continue' | 'warn' | 'fail';

/** Which engine finds free space. */
export type EngineChoice = 'auto' | EngineId;

/** Where --machine-readable output goes. */
export type MachineReadableTarget =
  | { kind: 'stream'; stream: 'stdout' | 'stderr' }
  | { kind: 'file'; path: string }
  | { kind: 'fd'; fd: number };

/** Options shared by both modes. */
export interface CommonOptions {
  /** Absolute path of the input (copy) or the image (in place). */
  readonly input: string;
  /** The input format; never probed when given. */
  readonly format?: string;
  /** Volumes (/dev/sda1, /dev/VG/LV) or volume groups to leave alone. */
  readonly ignore: readonly string[];
  /** Volumes to make wholly zero. */
  readonly zero: readonly string[];
  readonly engine: EngineChoice;
  /** Write a JSON report here. */
  readonly jsonFile?: string;
  /** Re-read the result and compare it with what it must hold (src/verify/). */
  readonly verify: boolean;
  /** --key and --keys-from-stdin, for LUKS volumes (src/keys/); absent when none was given. */
  readonly keys?: KeyRequest;
}

/** `sparsify IN OUT`. */
export interface CopyOptions extends CommonOptions {
  readonly mode: 'copy';
  /** Absolute path of the output image. */
  readonly output: string;
  /** Output format; undefined means the input's format. */
  readonly convert?: OutputFormat;
  readonly compress: boolean;
  /** `-o` creation options for the output image, passed to qemu-img create. */
  readonly outputOptions?: string;
  readonly tmp: TmpPlace;
  readonly checkTmpdir: CheckTmpdir;
  readonly overwrite: boolean;
  /** Skip the filesystem pass: only what already reads as zero becomes holes. */
  readonly noZero: boolean;
  /** --export NAME: a bundle of format and options that --convert, -o and --compress override (src/export/presets.ts). */
  readonly exportPreset?: ExportPresetName;
  /** --ova (with --export vmware): OUT is an OVA holding an OVF descriptor and the vmdk. */
  readonly ova?: boolean;
  /** --template: seal the guest on the overlay before the free-space pass. */
  readonly template?: TemplateRequest;
  /** --shrink (issue 12): shrink the filesystems and the virtual disk on the overlay before the pass. */
  readonly shrink?: ShrinkRequest;
  /**
   * --keep-backing (issue 13): a qcow2 input's backing chain is kept, not flattened
   * (src/modes/backing-chain.ts). 'always' for one image: an input with no chain is an error;
   * 'where-chained' for each disk of a batch: a disk with no chain is copied as it is.
   */
  readonly keepBacking?: 'always' | 'where-chained';
}

/** `--shrink [--shrink-margin SIZE]`: what a shrunk filesystem keeps above its minimum. */
export interface ShrinkRequest {
  readonly margin: ShrinkMargin;
}

/**
 * `--template` (issue 11): the guest operations to run on the copy's overlay, by name, in the
 * table's order (src/template/operations/table.ts; checked by the CLI), and whether to only look.
 */
export interface TemplateRequest {
  readonly operations: readonly string[];
  /** --dry-run: inspect and run the operations read-only, report what they would do, write no output. */
  readonly dryRun: boolean;
}

/** `sparsify --in-place DISK`. */
export interface InPlaceOptions extends CommonOptions {
  readonly mode: 'in-place';
}

/** One validated run. */
export type Options = CopyOptions | InPlaceOptions;
