/**
 * Which operations a run performs, from virt-sysprep's `--operations` syntax, and the
 * `--list-operations` listing. Pure.
 */
import { SparsifyError } from '../../errors.js';
import { OPERATIONS } from './table.js';
import type { Operation } from './types.js';

const HINT = 'sparsify --list-operations lists the operations';

/**
 * The operations named by the `--operations` values given, in the table's order. Each value is
 * a comma-separated list applied left to right, the values one after the other, starting from
 * nothing: `name` adds one, `-name` removes one, `defaults` and `all` (and `-defaults`, `-all`)
 * add or remove those. No value at all means the defaults (virt-sysprep's rules).
 */
export function selectOperations(values: readonly string[], table: readonly Operation[] = OPERATIONS): Operation[] {
  if (values.length === 0) return table.filter((op) => op.defaultOn);
  const byName = new Map(table.map((op) => [op.name, op]));
  const all = table.map((op) => op.name);
  const defaults = table.filter((op) => op.defaultOn).map((op) => op.name);
  const chosen = new Set<string>();
  for (const item of values.flatMap((v) => v.split(','))) {
    const remove = item.startsWith('-');
    const name = remove ? item.slice(1) : item;
    if (name === '') throw new SparsifyError('USAGE', '--operations: empty operation name', { hint: HINT });
    const names = name === 'all' ? all : name === 'defaults' ? defaults : byName.has(name) ? [name] : undefined;
    if (!names) throw new SparsifyError('USAGE', `--operations: '${name}' is not a known operation`, { hint: HINT });
    for (const n of names) {
      if (remove) chosen.delete(n);
      else chosen.add(n);
    }
  }
  return table.filter((op) => chosen.has(op.name));
}

/** `--list-operations`: one line per operation, `NAME * DESCRIPTION` (`*` when on by default), as virt-sysprep prints it. */
export function listOperations(table: readonly Operation[] = OPERATIONS): string {
  return table.map((op) => `${op.name} ${op.defaultOn ? '*' : ' '} ${op.description}\n`).join('');
}
