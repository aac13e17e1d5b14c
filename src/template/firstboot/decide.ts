/**
 * The one decision of first boot: after its host keys are removed, does the guest need a unit
 * that makes new ones, and if it cannot have one, what to warn. Pure: facts in, decision out.
 *
 * Why: a template without host keys whose sshd nothing gives new ones boots to an sshd that
 * refuses to start, an unreachable machine (PiShrink shipped exactly that).
 */
import type { SshBootFacts } from './facts.js';

export type HostKeyBoot =
  /** Nothing to add: no sshd, or something in the guest already makes the keys at boot. */
  | { readonly kind: 'nothing'; readonly reason: string }
  /** Add sparsify's first-boot unit, which runs this ssh-keygen. */
  | { readonly kind: 'unit'; readonly reason: string; readonly sshKeygen: string }
  /** The template will boot without host keys and sparsify cannot help it: say so. */
  | { readonly kind: 'warn'; readonly warning: string };

export function decideHostKeyBoot(facts: SshBootFacts): HostKeyBoot {
  if (facts.sshd === undefined) return { kind: 'nothing', reason: 'no sshd in the guest' };
  const [first] = facts.regenerators;
  if (first !== undefined) return { kind: 'nothing', reason: `host keys are made at boot by ${first}` };
  const lacking = `${facts.sshd} is installed and nothing in the guest makes missing host keys at boot`;
  if (!facts.systemd) {
    return { kind: 'warn', warning: `the template will boot without SSH host keys: ${lacking}, and its init is not systemd (run ssh-keygen -A in it at first boot)` };
  }
  if (facts.sshKeygen === undefined) {
    return { kind: 'warn', warning: `the template will boot without SSH host keys: ${lacking}, and it has no ssh-keygen to make them` };
  }
  return { kind: 'unit', reason: `${lacking} (no sshd-keygen unit, no ssh-keygen in the ssh unit, no cloud-init)`, sshKeygen: facts.sshKeygen };
}
