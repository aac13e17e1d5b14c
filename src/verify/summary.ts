import type { VerifyReport } from '../report/types.js';
import { humanBytes } from '../util/size.js';

/** The summary line of --verify: what was checked, and what was not and why. */
export function formatVerify(v: VerifyReport, mode: 'copy' | 'in-place'): string {
  const same = mode === 'copy' ? 'identical to the source' : 'unchanged';
  const parts = [
    `${v.ok ? 'ok' : 'FAILED'}: ${humanBytes(v.checkedBytes)} checked`,
    `${humanBytes(v.identicalBytes)} ${same}`,
    `${humanBytes(v.zeroBytes)} made zero and reading as zero`,
  ];
  const skipped = v.notVerified.map((n) => `${n.name} (${n.reason})`);
  const tail = skipped.length ? `; not verified: ${skipped.join(', ')}` : '';
  return `${parts.join(', ')} in ${(v.ms / 1000).toFixed(1)} s${tail}`;
}
