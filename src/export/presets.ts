/**
 * Export presets (`--export NAME`): each names the image a target platform imports, as data —
 * the format, its `qemu-img create -o` options, compression, a virtual-size multiple — so the
 * README, `--help` and the tests read the same table. {@link mergeExportPreset} is the one place
 * where a preset meets the explicit `--convert`, `-o` and `--compress`; explicit always wins.
 */
import { SparsifyError } from '../errors.js';
import type { OutputFormat } from '../options.js';
import { formatOptionString, parseOptionString, type OptionPair } from './option-string.js';

export const EXPORT_PRESET_NAMES = ['openstack', 'kubevirt', 'vmware', 'azure', 'hyperv', 'virtualbox'] as const;
export type ExportPresetName = (typeof EXPORT_PRESET_NAMES)[number];

const MIB = 1024 * 1024;

/** What a preset asks for. */
export interface ExportPreset {
  readonly name: ExportPresetName;
  /** One line for --help and the README: which platform, and what it gets. */
  readonly summary: string;
  readonly format: OutputFormat;
  /** `-o` options of the preset's format, in order. */
  readonly createOptions: readonly OptionPair[];
  /** Compressed clusters (qcow2 only). */
  readonly compress: boolean;
  /** The output's virtual size is the input's rounded up to a multiple of this (1: unchanged). */
  readonly sizeMultipleBytes: number;
  /** `--ova` may package the output (an OVF descriptor and the disk in one tar). */
  readonly ovaAllowed: boolean;
}

/**
 * The presets. Azure rejects a VHD that is not fixed or whose virtual size is not a whole
 * number of MiB; `force_size=on` keeps qemu from rounding the size to a CHS geometry (which
 * would break the MiB multiple). VMware's OVA import wants a streamOptimized vmdk.
 */
export const EXPORT_PRESETS: Readonly<Record<ExportPresetName, ExportPreset>> = {
  openstack: {
    name: 'openstack',
    summary: 'OpenStack Glance: compressed qcow2',
    format: 'qcow2',
    createOptions: [],
    compress: true,
    sizeMultipleBytes: 1,
    ovaAllowed: false,
  },
  kubevirt: {
    name: 'kubevirt',
    summary: 'KubeVirt / CDI: compressed qcow2',
    format: 'qcow2',
    createOptions: [],
    compress: true,
    sizeMultipleBytes: 1,
    ovaAllowed: false,
  },
  vmware: {
    name: 'vmware',
    summary: 'VMware ESXi / vSphere: streamOptimized vmdk (--ova: in an OVA with an OVF descriptor)',
    format: 'vmdk',
    createOptions: [['subformat', 'streamOptimized']],
    compress: false,
    sizeMultipleBytes: 1,
    ovaAllowed: true,
  },
  azure: {
    name: 'azure',
    summary: 'Microsoft Azure: fixed VHD, virtual size rounded up to a whole MiB',
    format: 'vpc',
    createOptions: [
      ['subformat', 'fixed'],
      ['force_size', 'on'],
    ],
    compress: false,
    sizeMultipleBytes: MIB,
    ovaAllowed: false,
  },
  hyperv: {
    name: 'hyperv',
    summary: 'Microsoft Hyper-V: vhdx',
    format: 'vhdx',
    createOptions: [],
    compress: false,
    sizeMultipleBytes: 1,
    ovaAllowed: false,
  },
  virtualbox: {
    name: 'virtualbox',
    summary: 'Oracle VirtualBox: vdi',
    format: 'vdi',
    createOptions: [],
    compress: false,
    sizeMultipleBytes: 1,
    ovaAllowed: false,
  },
};

/** The output options as the user gave them (any may be absent). */
export interface ExplicitOutput {
  readonly exportPreset?: ExportPresetName;
  readonly convert?: OutputFormat;
  readonly outputOptions?: string;
  readonly compress: boolean;
  readonly ova?: boolean;
}

/** What the output will be, before the input's format is known. */
export interface MergedOutput {
  /** undefined: the input's format. */
  readonly format?: OutputFormat;
  readonly createOptions?: string;
  readonly compress: boolean;
  readonly sizeMultipleBytes: number;
  readonly ova: boolean;
}

export function isExportPresetName(name: string): name is ExportPresetName {
  return (EXPORT_PRESET_NAMES as readonly string[]).includes(name);
}

/** The preset of that name, or a USAGE error that lists them. */
export function exportPreset(name: string): ExportPreset {
  if (!isExportPresetName(name)) {
    throw new SparsifyError('USAGE', `--export: unknown preset ‘${name}’ (use one of ${EXPORT_PRESET_NAMES.join(', ')})`, {
      hint: "see 'sparsify --help' or the README's Export presets",
    });
  }
  return EXPORT_PRESETS[name];
}

/**
 * Merges the preset (if any) with the explicit options; explicit wins. `--convert` replaces the
 * format; the preset's `-o` options and compression belong to its format, so they apply only
 * while the format stays the preset's, and then an explicit `-o key` replaces the preset's same
 * key and the preset's other keys stay. `--compress` given adds compression. The size multiple
 * is the platform's and stays whatever the format.
 */
export function mergeExportPreset(given: ExplicitOutput): MergedOutput {
  const preset = given.exportPreset === undefined ? undefined : EXPORT_PRESETS[given.exportPreset];
  if (given.ova && !preset?.ovaAllowed) {
    throw new SparsifyError('USAGE', `--ova goes with --export ${ovaPresets().join(' or ')}`, { hint: "see 'sparsify --help'" });
  }
  if (!preset) {
    return {
      ...(given.convert ? { format: given.convert } : {}),
      ...(given.outputOptions !== undefined ? { createOptions: given.outputOptions } : {}),
      compress: given.compress,
      sizeMultipleBytes: 1,
      ova: false,
    };
  }
  const format = given.convert ?? preset.format;
  const own = format === preset.format;
  const options = mergeOptions(own ? preset.createOptions : [], parseOptionString(given.outputOptions ?? ''));
  return {
    format,
    ...(options.length > 0 || given.outputOptions !== undefined ? { createOptions: formatOptionString(options) } : {}),
    compress: given.compress || (own && preset.compress),
    sizeMultipleBytes: preset.sizeMultipleBytes,
    ova: Boolean(given.ova),
  };
}

/** The preset's pairs whose key the user did not give, then the user's pairs as given. */
function mergeOptions(preset: readonly OptionPair[], explicit: readonly OptionPair[]): OptionPair[] {
  const explicitKeys = new Set(explicit.map(([k]) => k));
  return [...preset.filter(([k]) => !explicitKeys.has(k)), ...explicit];
}

function ovaPresets(): ExportPresetName[] {
  return EXPORT_PRESET_NAMES.filter((n) => EXPORT_PRESETS[n].ovaAllowed);
}

/** The virtual size rounded up to the multiple. */
export function roundSizeUp(sizeBytes: number, multipleBytes: number): number {
  return Math.ceil(sizeBytes / multipleBytes) * multipleBytes;
}
