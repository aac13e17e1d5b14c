/**
 * `--all-domains [--filter GLOB]…`: which of a connection's domains a batch takes. A filter is a
 * shell glob on the domain's name (`*`, `?`, `[a-z]`, `{web,db}-*`), matched whole and
 * case-sensitively, as libvirt names are; with several filters a name matching any is taken.
 * Pure: names in, names out, in virsh's order.
 */
import picomatch from 'picomatch';

/** The names the filters select; no filter selects all. */
export function selectDomains(names: readonly string[], filters: readonly string[]): string[] {
  if (filters.length === 0) return [...names];
  // A domain name may hold any character but '/', and may start with a dot.
  const isMatch = picomatch([...filters], { dot: true });
  return names.filter((name) => isMatch(name));
}

/** Parses `virsh list --all --name`: one name a line, blank lines between none or after. */
export function parseDomainNames(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
}
