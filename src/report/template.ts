/** The closing text's part about --template: the guest, each operation's files, the total, the warnings. */
import { humanBytes } from '../util/size.js';
import type { TemplateReport } from './types.js';

/** What a change did, in the closing text's words (a dry run's in the conditional). */
const VERBS = {
  removed: ['removed', 'would be removed'],
  emptied: ['emptied', 'would be emptied'],
  reset: ['reset', 'would be reset'],
  edited: ['edited', 'would be edited'],
  added: ['added', 'would be added'],
} as const;

/** The lines of the template section (no trailing blank line). */
export function formatTemplate(t: TemplateReport): string[] {
  const g = t.guest;
  const what = [g.distro ?? g.type, `${g.majorVersion}.${g.minorVersion}`, g.productName && `(${g.productName})`].filter(Boolean).join(' ');
  const out = [`Guest:  ${what}, hostname ${g.hostname ?? 'unknown'}, root ${g.root}`];
  const changed = t.operations.filter((op) => op.changes.length > 0);
  const total = `${humanBytes(t.removedBytes)} ${t.dryRun ? 'would be removed' : 'removed'}`;
  out.push(`${t.dryRun ? 'Dry run' : 'Sealed'}: ${t.operations.length} operations, ${changed.length} with something to do; ${total}`);
  for (const op of changed) {
    out.push(`  ${op.name}:`);
    for (const c of op.changes) {
      const bytes = c.bytes === undefined ? '' : ` (${humanBytes(c.bytes)})`;
      const detail = c.detail ? `: ${c.detail}` : '';
      out.push(`    ${VERBS[c.change][t.dryRun ? 1 : 0]} ${c.path}${bytes}${detail}`);
    }
  }
  for (const w of t.warnings) out.push(`Warning: ${w}`);
  return out;
}
