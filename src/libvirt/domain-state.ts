/**
 * Whether a domain may be touched: only a shut-off domain with no saved memory image, since a
 * guest that runs, is paused, or will resume from `virsh managedsave` holds a view of its disks
 * that sparsify would change under it. Pure: `virsh dominfo` text in, a verdict out.
 */
import { SparsifyError } from '../errors.js';

/** What `virsh dominfo` says about a domain's state. */
export interface DomainState {
  /** virsh's words: running, paused, shut off, crashed, pmsuspended, in shutdown, idle. */
  readonly state: string;
  /** A `virsh managedsave` image the next start resumes from. */
  readonly managedSave: boolean;
}

/** Parses `virsh dominfo` ("Key:   value" lines); throws BAD_DOMAIN without a State line. */
export function parseDomInfo(stdout: string): DomainState {
  const fields = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line.trim());
    if (m) fields.set(m[1]!.trim().toLowerCase(), m[2]!.trim());
  }
  const state = fields.get('state');
  if (!state) throw new SparsifyError('BAD_DOMAIN', 'virsh dominfo gave no domain state');
  return { state, managedSave: fields.get('managed save') === 'yes' };
}

/** Throws DOMAIN_ACTIVE, naming the domain and its state, unless it is shut off with nothing saved. */
export function refuseUnlessShutOff(name: string, s: DomainState): void {
  if (s.state === 'shut off' && !s.managedSave) return;
  const state = s.state === 'shut off' ? 'shut off with a managed save image' : s.state;
  const hint = s.managedSave
    ? `its saved memory refers to the disks as they are: start it and shut it down, or drop the image (virsh managedsave-remove ${name})`
    : `shut it down first (virsh shutdown ${name}) and run sparsify again`;
  throw new SparsifyError('DOMAIN_ACTIVE', `domain ‘${name}’ is ${state}: sparsify only works on a shut-off domain`, { hint });
}
