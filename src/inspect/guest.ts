/**
 * libguestfs inspection through a launched appliance: the operating systems on its disks and
 * their filesystems. Read-only: inspection mounts read-only and unmounts again; nothing here
 * writes. Used by --inspect and, later, by the templating operations to find the guest's root.
 */
import type { Appliance } from '../engines/appliance/guestfish.js';
import type { InspectedFilesystem, InspectedOs } from './types.js';

/** libguestfs says 'unknown' where inspection could not tell; sparsify leaves such a field out. */
const known = (value: string): string | undefined => (value === '' || value === 'unknown' ? undefined : value);

/** The lines of a list result. */
const linesOf = (stdout: string): string[] => stdout.split('\n').filter((l) => l !== '');

/** A string result, or undefined when the command fails (no label, an unknown field). */
async function optional(g: Appliance, command: string, ...args: string[]): Promise<string | undefined> {
  try {
    return known((await g.run(command, ...args)).replace(/\n$/, ''));
  } catch {
    return undefined;
  }
}

/**
 * guestfish prints a hash as `key: value` lines; a mount point holds no newline, but a device
 * name may hold ': ' only in theory, so split at the first one.
 */
export function parseHash(stdout: string): [string, string][] {
  return linesOf(stdout).flatMap((line) => {
    const at = line.indexOf(': ');
    return at < 0 ? [] : [[line.slice(0, at), line.slice(at + 2)] as [string, string]];
  });
}

/** Mount points in the order virt-inspector lists them: the shortest first, then by name. */
export function sortMountpoints<T extends { mountpoint: string }>(entries: T[]): T[] {
  return entries.sort((a, b) => a.mountpoint.length - b.mountpoint.length || (a.mountpoint < b.mountpoint ? -1 : a.mountpoint > b.mountpoint ? 1 : 0));
}

/** sda2 before sda10. */
const byDeviceName = (a: InspectedFilesystem, b: InspectedFilesystem): number => a.device.localeCompare(b.device, 'en', { numeric: true });

/** One filesystem's type, label and UUID. */
export async function inspectFilesystem(g: Appliance, device: string): Promise<InspectedFilesystem> {
  const [type, label, uuid] = [await optional(g, 'vfs-type', device), await optional(g, 'vfs-label', device), await optional(g, 'vfs-uuid', device)];
  return { device, ...(type ? { type } : {}), ...(label ? { label } : {}), ...(uuid ? { uuid } : {}) };
}

/** Every filesystem on the appliance's disks (libguestfs' list-filesystems, swap included). */
export async function listFilesystems(g: Appliance): Promise<InspectedFilesystem[]> {
  const found: InspectedFilesystem[] = [];
  for (const [device] of parseHash(await g.run('list-filesystems'))) found.push(await inspectFilesystem(g, device));
  return found;
}

/** The operating systems libguestfs finds; none is an empty list, not an error. */
export async function inspectOperatingSystems(g: Appliance, filesystems: readonly InspectedFilesystem[]): Promise<InspectedOs[]> {
  const roots = linesOf(await g.run('inspect-os'));
  const byDevice = new Map(filesystems.map((f) => [f.device, f]));
  const systems: InspectedOs[] = [];
  for (const root of roots) {
    const field = (name: string) => optional(g, `inspect-get-${name}`, root);
    const version = async (name: string) => Number((await field(name)) ?? '0');
    const mountpoints = sortMountpoints(parseHash(await g.run('inspect-get-mountpoints', root)).map(([mountpoint, device]) => ({ mountpoint, device })));
    const own = linesOf(await g.run('inspect-get-filesystems', root));
    const entries: [keyof InspectedOs, string | undefined][] = [
      ['arch', await field('arch')],
      ['distro', await field('distro')],
      ['productName', await field('product-name')],
      ['productVariant', await field('product-variant')],
      ['packageFormat', await field('package-format')],
      ['packageManagement', await field('package-management')],
      ['hostname', await field('hostname')],
      ['osinfo', await field('osinfo')],
    ];
    systems.push({
      root,
      type: (await field('type')) ?? 'unknown',
      majorVersion: await version('major-version'),
      minorVersion: await version('minor-version'),
      ...Object.fromEntries(entries.filter(([, v]) => v !== undefined)),
      mountpoints,
      // By device name, as virt-inspector lists them (libguestfs' own order varies).
      filesystems: (await Promise.all(own.map(async (device) => byDevice.get(device) ?? (await inspectFilesystem(g, device))))).sort(byDeviceName),
    });
  }
  return systems;
}
