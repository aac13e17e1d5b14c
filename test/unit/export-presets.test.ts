import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli/parse-options.js';
import { formatOptionString, optionValue, parseOptionString } from '../../src/export/option-string.js';
import { EXPORT_PRESET_NAMES, EXPORT_PRESETS, exportPreset, mergeExportPreset } from '../../src/export/presets.js';
import { decideOutput } from '../../src/modes/output-format.js';
import { refusal } from '../helpers/refusal.js';

const MIB = 1024 * 1024;

describe('export presets: the table', () => {
  it('holds each preset the issue names, with its format and options', () => {
    expect([...EXPORT_PRESET_NAMES].sort()).toEqual(['azure', 'hyperv', 'kubevirt', 'openstack', 'virtualbox', 'vmware']);
    const merged = (name: (typeof EXPORT_PRESET_NAMES)[number]) => mergeExportPreset({ exportPreset: name, compress: false });
    expect(merged('openstack')).toEqual({ format: 'qcow2', compress: true, sizeMultipleBytes: 1, ova: false });
    expect(merged('kubevirt')).toEqual({ format: 'qcow2', compress: true, sizeMultipleBytes: 1, ova: false });
    expect(merged('vmware')).toEqual({ format: 'vmdk', createOptions: 'subformat=streamOptimized', compress: false, sizeMultipleBytes: 1, ova: false });
    expect(merged('azure')).toEqual({ format: 'vpc', createOptions: 'subformat=fixed,force_size=on', compress: false, sizeMultipleBytes: MIB, ova: false });
    expect(merged('hyperv')).toEqual({ format: 'vhdx', compress: false, sizeMultipleBytes: 1, ova: false });
    expect(merged('virtualbox')).toEqual({ format: 'vdi', compress: false, sizeMultipleBytes: 1, ova: false });
  });

  it('allows --ova with vmware alone', () => {
    expect(EXPORT_PRESET_NAMES.filter((n) => EXPORT_PRESETS[n].ovaAllowed)).toEqual(['vmware']);
  });

  it('refuses an unknown preset, listing them all', () => {
    const e = refusal(() => exportPreset('xen'));
    expect(e.code).toBe('USAGE');
    expect(e.message).toBe('--export: unknown preset ‘xen’ (use one of openstack, kubevirt, vmware, azure, hyperv, virtualbox)');
  });
});

describe('mergeExportPreset: explicit options win', () => {
  it('without a preset, passes the explicit options through unchanged', () => {
    expect(mergeExportPreset({ convert: 'vdi', outputOptions: 'static=on', compress: false })).toEqual({
      format: 'vdi',
      createOptions: 'static=on',
      compress: false,
      sizeMultipleBytes: 1,
      ova: false,
    });
    expect(mergeExportPreset({ compress: true })).toEqual({ compress: true, sizeMultipleBytes: 1, ova: false });
  });

  it('an explicit -o key replaces the preset’s same key; the preset’s other keys stay', () => {
    const m = mergeExportPreset({ exportPreset: 'azure', outputOptions: 'force_size=off,preallocation=off', compress: false });
    expect(parseOptionString(m.createOptions!)).toEqual([
      ['subformat', 'fixed'],
      ['force_size', 'off'],
      ['preallocation', 'off'],
    ]);
    const v = mergeExportPreset({ exportPreset: 'vmware', outputOptions: 'subformat=monolithicSparse', compress: false });
    expect(v.createOptions).toBe('subformat=monolithicSparse');
    expect(mergeExportPreset({ exportPreset: 'vmware', outputOptions: 'adapter_type=lsilogic', compress: false }).createOptions).toBe(
      'subformat=streamOptimized,adapter_type=lsilogic',
    );
  });

  it('--convert replaces the format and drops the preset’s format-bound -o and compression, keeping the size multiple', () => {
    expect(mergeExportPreset({ exportPreset: 'openstack', convert: 'raw', compress: false })).toEqual({ format: 'raw', compress: false, sizeMultipleBytes: 1, ova: false });
    expect(mergeExportPreset({ exportPreset: 'azure', convert: 'vhdx', compress: false })).toEqual({ format: 'vhdx', compress: false, sizeMultipleBytes: MIB, ova: false });
    expect(mergeExportPreset({ exportPreset: 'azure', convert: 'vpc', compress: false }).createOptions).toBe('subformat=fixed,force_size=on');
  });

  it('--compress adds compression to a preset that has none, and -o adds to a preset with no options', () => {
    expect(mergeExportPreset({ exportPreset: 'hyperv', convert: 'qcow2', compress: true }).compress).toBe(true);
    expect(mergeExportPreset({ exportPreset: 'openstack', outputOptions: 'compression_type=zstd', compress: false })).toEqual({
      format: 'qcow2',
      createOptions: 'compression_type=zstd',
      compress: true,
      sizeMultipleBytes: 1,
      ova: false,
    });
  });

  it('refuses --ova without vmware', () => {
    expect(refusal(() => mergeExportPreset({ compress: false, ova: true })).message).toBe('--ova goes with --export vmware');
    expect(refusal(() => mergeExportPreset({ exportPreset: 'azure', compress: false, ova: true })).code).toBe('USAGE');
    expect(mergeExportPreset({ exportPreset: 'vmware', compress: false, ova: true }).ova).toBe(true);
  });
});

describe('decideOutput with presets', () => {
  it('rounds the azure size up to a whole MiB, and leaves a whole MiB as it is', () => {
    expect(decideOutput({ exportPreset: 'azure', compress: false }, { format: 'raw', virtualSizeBytes: 300 * MIB + 512 }).sizeBytes).toBe(301 * MIB);
    expect(decideOutput({ exportPreset: 'azure', compress: false }, { format: 'raw', virtualSizeBytes: 300 * MIB }).sizeBytes).toBe(300 * MIB);
    expect(decideOutput({ exportPreset: 'hyperv', compress: false }, { format: 'raw', virtualSizeBytes: 300 * MIB + 512 }).sizeBytes).toBe(300 * MIB + 512);
  });

  it('refuses --ova when --convert or -o make the disk something other than a streamOptimized vmdk', () => {
    const input = { format: 'raw', virtualSizeBytes: MIB };
    expect(decideOutput({ exportPreset: 'vmware', compress: false, ova: true }, input)).toMatchObject({ format: 'vmdk', ova: true });
    for (const o of [{ convert: 'qcow2' as const }, { outputOptions: 'subformat=monolithicSparse' }]) {
      const e = refusal(() => decideOutput({ exportPreset: 'vmware', compress: false, ova: true, ...o }, input));
      expect(e.code).toBe('USAGE');
      expect(e.message).toMatch(/^--ova packages a streamOptimized vmdk/);
    }
  });

  it('refuses --verify where it cannot check yet (an OVA, a size rounded up)', () => {
    const input = { format: 'raw', virtualSizeBytes: MIB + 512 };
    expect(refusal(() => decideOutput({ exportPreset: 'azure', compress: false, verify: true }, input)).message).toMatch(/--verify cannot check an output larger/);
    expect(refusal(() => decideOutput({ exportPreset: 'vmware', ova: true, compress: false, verify: true }, input)).message).toMatch(/--verify cannot check an OVA/);
    expect(decideOutput({ exportPreset: 'azure', compress: false, verify: true }, { ...input, virtualSizeBytes: MIB }).sizeBytes).toBe(MIB);
  });

  it('refuses an explicit --compress with a preset whose format is not qcow2', () => {
    expect(refusal(() => decideOutput({ exportPreset: 'vmware', compress: true }, { format: 'raw', virtualSizeBytes: MIB })).message).toBe(
      '--compress needs qcow2 output, not vmdk; use --convert qcow2',
    );
  });
});

describe('option strings', () => {
  it('split and join with qemu’s doubled commas', () => {
    const pairs = parseOptionString('a=1,,2,b,c=x');
    expect(pairs).toEqual([
      ['a', '1,2'],
      ['b', undefined],
      ['c', 'x'],
    ]);
    expect(formatOptionString(pairs)).toBe('a=1,,2,b,c=x');
    expect(optionValue('subformat=fixed,subformat=dynamic', 'subformat')).toBe('dynamic');
  });
});

describe('the command line: --export and --ova', () => {
  const run = (...argv: string[]) => {
    const c = parseCommandLine(argv);
    if (c.kind !== 'run') throw new Error(`expected a run, got ${c.kind}`);
    return c.options;
  };
  const usage = (...argv: string[]) => refusal(() => parseCommandLine(argv));

  it('puts the preset and --ova into the options', () => {
    expect(run('--export', 'vmware', '--ova', 'in.img', 'out.ova')).toMatchObject({ mode: 'copy', exportPreset: 'vmware', ova: true, output: resolve('out.ova') });
    const azure = run('--export', 'azure', 'in.img', 'out.vhd');
    expect(azure).toMatchObject({ exportPreset: 'azure' });
    expect(azure).not.toHaveProperty('ova');
  });

  it('refuses an unknown preset listing them, --ova without vmware, and both with --in-place or --inspect', () => {
    expect(usage('--export', 'xen', 'in.img', 'out').message).toMatch(/unknown preset ‘xen’ \(use one of openstack, kubevirt, vmware, azure, hyperv, virtualbox\)/);
    expect(usage('--ova', 'in.img', 'out.ova').message).toBe('--ova goes with --export vmware');
    expect(usage('--export', 'azure', '--ova', 'in.img', 'out.ova').message).toBe('--ova goes with --export vmware');
    expect(usage('--in-place', '--export', 'azure', 'in.img').message).toBe('you cannot use --in-place and --export options together');
    expect(usage('--inspect', '--export', 'azure', 'in.img').message).toBe('you cannot use --inspect and --export options together');
  });
});
