/** --template, --operations, --list-operations and --dry-run on the command line (issue 11). */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../../src/cli/parse-options.js';
import { SparsifyError } from '../../../src/errors.js';
import { OPERATIONS } from '../../../src/template/operations/table.js';

function options(...argv: string[]) {
  const c = parseCommandLine(argv);
  if (c.kind !== 'run') throw new Error(`expected a run, got ${c.kind}`);
  return c.options;
}

function usageError(...argv: string[]): SparsifyError {
  try {
    parseCommandLine(argv);
  } catch (err) {
    expect(err).toBeInstanceOf(SparsifyError);
    expect((err as SparsifyError).code).toBe('USAGE');
    return err as SparsifyError;
  }
  throw new Error('expected a usage error');
}

const DEFAULTS = OPERATIONS.filter((op) => op.defaultOn).map((op) => op.name);

describe('parseCommandLine: --template', () => {
  it('without --operations runs the default operations, not a dry run, in copy mode', () => {
    expect(options('--template', 'in.raw', 'out.qcow2')).toMatchObject({
      mode: 'copy',
      input: resolve('in.raw'),
      output: resolve('out.qcow2'),
      template: { operations: DEFAULTS, dryRun: false },
    });
  });

  it("takes virt-sysprep's syntax: -name, defaults, all, comma lists, repeated options applied in order", () => {
    expect(options('--template', '--operations', 'defaults,-logfiles', 'a', 'b')).toMatchObject({
      template: { operations: DEFAULTS.filter((n) => n !== 'logfiles') },
    });
    expect(options('--template', '--operations', 'ssh-hostkeys', '--operations', 'machine-id', 'a', 'b')).toMatchObject({
      template: { operations: ['machine-id', 'ssh-hostkeys'] },
    });
    expect(options('--template', '--operations', 'all', '--operations', '-defaults', 'a', 'b')).toMatchObject({
      template: { operations: OPERATIONS.filter((op) => !op.defaultOn).map((op) => op.name) },
    });
  });

  it('--dry-run with --template', () => {
    expect(options('--template', '--dry-run', 'a', 'b')).toMatchObject({ template: { dryRun: true } });
  });

  it('keeps the copy options (--convert, --compress) beside --template', () => {
    expect(options('--template', '--convert', 'qcow2', '--compress', 'a', 'b')).toMatchObject({ convert: 'qcow2', compress: true, template: { dryRun: false } });
  });

  it('a plain copy has no template', () => {
    expect(options('a', 'b')).not.toHaveProperty('template');
  });

  it('an unknown operation name is a usage error naming it, with a hint to list them', () => {
    const err = usageError('--template', '--operations', 'defaults,no-such-op', 'a', 'b');
    expect(err.message).toBe("--operations: 'no-such-op' is not a known operation");
    expect(err.hint).toMatch(/--list-operations/);
    expect(usageError('--template', '--operations', 'ssh-hostkeys,,machine-id', 'a', 'b').message).toMatch(/empty operation name/);
  });

  it('--operations and --dry-run without --template are usage errors saying to add it', () => {
    expect(usageError('--operations', 'defaults', 'a', 'b').message).toBe('--operations goes with --template: add --template to seal the guest');
    expect(usageError('--dry-run', 'a', 'b').message).toMatch(/^--dry-run goes with --template: add --template/);
  });

  it('refuses --template with --in-place and with --inspect', () => {
    expect(usageError('--template', '--in-place', 'a').message).toMatch(/--in-place and --template/);
    expect(usageError('--inspect', '--template', 'a').message).toMatch(/--inspect and --template/);
    expect(usageError('--inspect', '--operations', 'all', 'a').message).toMatch(/--inspect and --operations/);
  });

  it('still needs both disks', () => {
    expect(usageError('--template', 'a').message).toMatch(/usage: sparsify/);
  });
});

describe('parseCommandLine: --list-operations', () => {
  it('is a command of its own, whatever else is given', () => {
    expect(parseCommandLine(['--list-operations'])).toEqual({ kind: 'list-operations' });
    expect(parseCommandLine(['--template', '--list-operations', 'a', 'b'])).toEqual({ kind: 'list-operations' });
  });
});
