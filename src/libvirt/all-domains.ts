/**
 * `--all-domains [--filter GLOB]…`: the requests for every domain of the connection whose name
 * the filters select. A typo'd filter that selects nothing is an error rather than a batch of
 * nothing that exits 0.
 */
import type { RunContext } from '../context.js';
import { SparsifyError } from '../errors.js';
import type { DomainRequest } from './domain-run.js';
import { selectDomains } from './domain-filter.js';
import { listDomainNames } from './virsh.js';

/** What --all-domains asks for: the filters, and the request each selected domain gets. */
export interface AllDomainsRequest {
  readonly filters: readonly string[];
  readonly request: Omit<DomainRequest, 'domain'>;
}

/** One request per selected domain, in virsh's order. */
export async function listedDomainRequests(ctx: RunContext, all: AllDomainsRequest): Promise<DomainRequest[]> {
  const names = await listDomainNames(ctx, all.request.connection);
  const selected = selectDomains(names, all.filters);
  if (selected.length === 0) {
    const where = all.request.connection.uri ?? "virsh's default connection";
    const what = all.filters.length ? `no domain on ${where} matches --filter ${all.filters.map((f) => `‘${f}’`).join(', ')}` : `no domain on ${where}`;
    throw new SparsifyError('BAD_DOMAIN', what, { hint: 'virsh list --all shows the domains; -c URI picks another connection' });
  }
  return selected.map((domain) => ({ ...all.request, domain }));
}
