/** --shrink and --shrink-margin on the command line (issue 12). */
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../../src/cli/parse-options.js';
import { refusal } from '../../helpers/refusal.js';

/** The validated options of a copy or in-place run. */
const options = (...argv: string[]) => {
  const parsed = parseCommandLine(argv);
  return parsed.kind === 'run' ? parsed.options : undefined;
};

/** The message of the usage error `argv` must give. */
const usageMessage = (...argv: string[]): string => {
  const err = refusal(() => parseCommandLine(argv));
  expect(err.code).toBe('USAGE');
  return err.message;
};

describe('parseCommandLine: --shrink', () => {
  it('copy mode with the default margin (5%), or the one given', () => {
    expect(options('--shrink', 'in.raw', 'out.qcow2')).toMatchObject({ mode: 'copy', shrink: { margin: { kind: 'percent', percent: 5 } } });
    expect(options('--shrink', '--shrink-margin', '128M', 'in.raw', 'out.qcow2')).toMatchObject({ shrink: { margin: { kind: 'bytes', bytes: 128 << 20 } } });
    expect(options('in.raw', 'out.qcow2')).not.toHaveProperty('shrink');
  });

  it('is refused with --in-place, and --shrink-margin alone or badly written is refused, as usage errors', () => {
    expect(usageMessage('--shrink', '--in-place', 'disk.raw')).toMatch(/--in-place and --shrink/);
    expect(usageMessage('--shrink-margin', '5%', 'in.raw', 'out.raw')).toMatch(/--shrink-margin goes with --shrink/);
    expect(usageMessage('--shrink', '--shrink-margin', 'lots', 'in.raw', 'out.raw')).toMatch(/not a size/);
    expect(usageMessage('--inspect', '--shrink', 'in.raw')).toMatch(/--inspect and --shrink/);
  });
});
