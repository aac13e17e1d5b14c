/** The appliance as a host fact for the planner (HostFacts.appliance): usable, or why not. */
import type { RunContext } from '../../context.js';
import { refused, type Verdict } from '../../util/verdict.js';
import { findAppliance } from './host.js';

/** Whether libguestfs can launch its appliance here (memoised: host.ts checks once per process, and caches per host). */
export async function applianceVerdict(ctx: RunContext): Promise<Verdict> {
  const found = await findAppliance(ctx);
  return found.available ? { ok: true } : refused(found.reason);
}
