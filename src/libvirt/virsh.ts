/**
 * libvirt through virsh, one program call per question: a domain's state, its definition, and
 * defining it anew. The connection URI is virsh's `-c`; without one virsh picks its default
 * (LIBVIRT_DEFAULT_URI, then its configuration), as a user's own virsh would.
 */
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import { ToolFailedError, runTool, stderrTail } from '../util/run.js';
import { parseDomainNames } from './domain-filter.js';
import { parseDomInfo, type DomainState } from './domain-state.js';

/** Which libvirt to ask: a URI, or virsh's default. */
export interface Connection {
  readonly uri?: string;
}

async function runVirsh(ctx: RunContext, conn: Connection, args: readonly string[], domain?: string): Promise<string> {
  try {
    const { stdout } = await runTool(ctx, 'virsh', [...(conn.uri ? ['-c', conn.uri] : []), ...args]);
    return stdout;
  } catch (err) {
    if (domain !== undefined && err instanceof ToolFailedError && /failed to get domain|Domain not found/i.test(err.stderr)) {
      throw new SparsifyError('BAD_DOMAIN', `no domain ‘${domain}’ on ${conn.uri ?? "virsh's default connection"}`, {
        cause: err,
        hint: 'virsh list --all shows the domains; -c URI picks another connection',
      });
    }
    if (err instanceof ToolFailedError) {
      throw new SparsifyError('TOOL_FAILED', `virsh ${args[0]} failed: ${stderrTail(err.stderr, 2)}`, { cause: err });
    }
    throw err;
  }
}

/** The domain's state (`virsh dominfo`); BAD_DOMAIN when there is no such domain. */
export async function readDomainState(ctx: RunContext, conn: Connection, domain: string): Promise<DomainState> {
  return parseDomInfo(await runVirsh(ctx, conn, ['dominfo', '--', domain], domain));
}

/**
 * The persistent definition (`--inactive`), with what virsh hides unless asked (`--security-info`:
 * VNC passwords and the like), so that defining an edited copy loses nothing.
 */
export function readDomainXml(ctx: RunContext, conn: Connection, domain: string): Promise<string> {
  return runVirsh(ctx, conn, ['dumpxml', '--inactive', '--security-info', '--', domain], domain);
}

/** `virsh define --validate FILE`: checked against libvirt's schema, then it replaces the domain's definition. */
export async function defineDomain(ctx: RunContext, conn: Connection, xmlPath: string): Promise<void> {
  await runVirsh(ctx, conn, ['define', '--validate', '--file', xmlPath]);
}

/** Every domain of the connection, shut off or not (`virsh list --all --name`). */
export async function listDomainNames(ctx: RunContext, conn: Connection): Promise<string[]> {
  return parseDomainNames(await runVirsh(ctx, conn, ['list', '--all', '--name']));
}
