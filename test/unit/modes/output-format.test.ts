import { describe, expect, it } from 'vitest';
import { decideOutputFormat } from '../../../src/modes/output-format.js';
import { refusal } from '../../helpers/refusal.js';

describe('decideOutputFormat: the one decider of the output format', () => {
  const plain = { compress: false };

  it('is --convert when given, else the input format', () => {
    expect(decideOutputFormat({ ...plain, convert: 'vmdk' }, 'raw')).toBe('vmdk');
    expect(decideOutputFormat(plain, 'qcow2')).toBe('qcow2');
    expect(decideOutputFormat({ compress: true }, 'qcow2')).toBe('qcow2');
    expect(decideOutputFormat({ compress: true, convert: 'qcow2', outputOptions: 'cluster_size=65536' }, 'raw')).toBe('qcow2');
  });

  it('refuses an input format it cannot write, naming --convert', () => {
    const e = refusal(() => decideOutputFormat(plain, 'qed'));
    expect(e.code).toBe('UNSUPPORTED');
    expect(e.message).toBe('cannot write qed output');
    expect(e.hint).toMatch(/--convert with one of raw, qcow2/);
  });

  it("refuses --compress for raw output with virt-sparsify's message, whether raw is asked for or the input's", () => {
    const message = '--compress cannot be used for raw output.  Remove this option or use --convert qcow2.';
    for (const [options, input] of [[{ compress: true, convert: 'raw' as const }, 'qcow2'], [{ compress: true }, 'raw']] as const) {
      const e = refusal(() => decideOutputFormat(options, input));
      expect(e.code).toBe('USAGE');
      expect(e.message).toBe(message);
      expect(e.hint).toBe("see 'sparsify --help'");
    }
    expect(refusal(() => decideOutputFormat({ compress: true }, 'vmdk')).message).toBe('--compress needs qcow2 output, not vmdk; use --convert qcow2');
  });

  it('refuses -o for raw output, and takes it for any other format', () => {
    const e = refusal(() => decideOutputFormat({ ...plain, outputOptions: 'x=y' }, 'raw'));
    expect(e.code).toBe('USAGE');
    expect(e.message).toMatch(/^-o cannot be used for raw output/);
    expect(decideOutputFormat({ ...plain, outputOptions: 'x=y' }, 'vdi')).toBe('vdi');
  });
});
