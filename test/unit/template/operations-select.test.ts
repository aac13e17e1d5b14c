import { describe, expect, it } from 'vitest';
import { SparsifyError } from '../../../src/errors.js';
import { listOperations, selectOperations } from '../../../src/template/operations/select.js';
import { OPERATIONS } from '../../../src/template/operations/table.js';
import type { Operation } from '../../../src/template/operations/types.js';

const op = (name: string, defaultOn: boolean): Operation => ({
  name,
  defaultOn,
  description: `Do ${name}`,
  appliesTo: { osTypes: ['linux'] },
  actions: [{ kind: 'remove', glob: `/${name}` }],
});
const TABLE = [op('a-on', true), op('b-off', false), op('c-on', true), op('d-off', false)];
const names = (values: string[]) => selectOperations(values, TABLE).map((o) => o.name);

function usageError(values: string[]): SparsifyError {
  try {
    selectOperations(values, TABLE);
  } catch (err) {
    if (err instanceof SparsifyError) return err;
    throw err;
  }
  throw new Error(`no error for ${values.join(' ')}`);
}

describe('--operations', () => {
  it('none given: the defaults', () => {
    expect(names([])).toEqual(['a-on', 'c-on']);
    expect(selectOperations([]).every((o) => o.defaultOn)).toBe(true);
  });

  it('a list starts from nothing: only the names given, in the table order', () => {
    expect(names(['d-off,a-on'])).toEqual(['a-on', 'd-off']);
  });

  it('defaults and all add those; -name removes one; later items win', () => {
    expect(names(['defaults,-c-on,b-off'])).toEqual(['a-on', 'b-off']);
    expect(names(['all,-a-on'])).toEqual(['b-off', 'c-on', 'd-off']);
    expect(names(['a-on,-a-on'])).toEqual([]);
    expect(names(['-a-on,a-on'])).toEqual(['a-on']);
    expect(names(['all,-defaults'])).toEqual(['b-off', 'd-off']);
    expect(names(['d-off,-all,c-on'])).toEqual(['c-on']);
  });

  it('several --operations accumulate, left to right', () => {
    expect(names(['a-on', 'b-off', '-a-on'])).toEqual(['b-off']);
  });

  it('an unknown name, added or removed, is a usage error naming it', () => {
    for (const bad of [['a-on,nope'], ['-nope']]) {
      const err = usageError(bad);
      expect(err.code).toBe('USAGE');
      expect(err.message).toBe("--operations: 'nope' is not a known operation");
      expect(err.hint).toMatch(/--list-operations/);
    }
  });

  it('an empty name is a usage error', () => {
    expect(usageError(['a-on,,c-on']).message).toBe('--operations: empty operation name');
    expect(usageError(['-']).code).toBe('USAGE');
  });
});

describe('--list-operations', () => {
  it('prints NAME, * when on by default (a blank otherwise), the description: one line each', () => {
    expect(listOperations(TABLE)).toBe('a-on * Do a-on\nb-off   Do b-off\nc-on * Do c-on\nd-off   Do d-off\n');
  });

  it('lists every operation of the table in its order', () => {
    const lines = listOperations().split('\n').filter((l) => l !== '');
    expect(lines.map((l) => l.split(' ')[0])).toEqual(OPERATIONS.map((o) => o.name));
    expect(lines).toContain('machine-id * Empty the machine ID (systemd makes a new one at first boot)');
  });
});
