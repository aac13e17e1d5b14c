/**
 * A libvirt domain definition (`virsh dumpxml`) → the disks sparsify can take, and the others
 * with the reason they are left alone; and the same definition with some disks pointed at new
 * images (--update-domain). Pure: text in, values out. The XML is untrusted input: a disk whose
 * elements are missing or malformed is skipped with the reason, never guessed at.
 *
 * Element names follow https://libvirt.org/formatdomain.html#hard-drives-floppy-disks-cdroms.
 */
import { Builder, parseStringPromise } from 'xml2js';
import { SparsifyError } from '../errors.js';

/** A disk sparsify can take: a file or a block device the guest writes. */
export interface DomainDisk {
  /** The guest's name for it (`<target dev>`): vda, sdb. */
  readonly target: string;
  readonly kind: 'file' | 'block';
  /** `<source file>` or `<source dev>`. */
  readonly path: string;
  /** `<driver type>`; libvirt hands a disk without one to qemu as raw (format probing is off). */
  readonly format: string;
  /** Whether libvirt shows a backing chain under it (`<backingStore>` with a source). */
  readonly hasBacking: boolean;
}

/** A disk left alone, and why. */
export interface SkippedDisk {
  readonly target: string;
  readonly reason: string;
}

/** What a domain definition says about its disks. */
export interface DomainDefinition {
  readonly name: string;
  readonly uuid?: string;
  readonly disks: readonly DomainDisk[];
  readonly skipped: readonly SkippedDisk[];
}

/** Where a disk now lives, for {@link rewriteDiskSources}. */
export interface NewDiskSource {
  readonly path: string;
  readonly format: string;
  /** --keep-backing: the new image is over the old one's backing file, so its <backingStore> stays. */
  readonly keepsBacking?: boolean;
}

/** An XML element as xml2js gives it with its defaults: attributes under `$`, children as arrays. */
type XmlNode = { $?: Record<string, string>; _?: string } & { [child: string]: unknown };

/** Parses a domain definition; throws BAD_DOMAIN when it is not one. */
export async function parseDomainXml(xml: string): Promise<DomainDefinition> {
  const domain = await readDomainNode(xml);
  const name = text(first(domain, 'name'));
  if (!name) throw notADomain('it has no <name>');
  const uuid = text(first(domain, 'uuid'));
  const disks: DomainDisk[] = [];
  const skipped: SkippedDisk[] = [];
  diskNodes(domain).forEach((node, index) => {
    const verdict = judgeDisk(node, index);
    if ('reason' in verdict) skipped.push(verdict);
    else disks.push(verdict);
  });
  return { name, ...(uuid ? { uuid } : {}), disks, skipped };
}

/**
 * The definition with the disks named in `sources` (by target) pointing at their new images: a
 * file disk of the new format with no backing chain (the copy is flattened), or with the one it
 * had when the copy kept it (the same backing file below a new top layer). Everything else
 * is kept; libvirt orders the elements itself when it parses the result.
 */
export async function rewriteDiskSources(xml: string, sources: ReadonlyMap<string, NewDiskSource>): Promise<string> {
  const root = (await parseStringPromise(xml)) as Record<string, XmlNode>;
  const domain = root.domain;
  if (!domain) throw notADomain('its root element is not <domain>');
  const found = new Set<string>();
  for (const node of diskNodes(domain)) {
    const target = attr(first(node, 'target'), 'dev');
    const source = target === undefined ? undefined : sources.get(target);
    if (!source || target === undefined) continue;
    found.add(target);
    node.$ = { ...node.$, type: 'file' };
    const sourceNode: XmlNode = first(node, 'source') ?? {};
    sourceNode.$ = { file: source.path };
    node.source = [sourceNode];
    const driver: XmlNode = first(node, 'driver') ?? { $: { name: 'qemu' } };
    driver.$ = { ...driver.$, type: source.format };
    node.driver = [driver];
    if (!source.keepsBacking) delete node.backingStore;
  }
  const missing = [...sources.keys()].filter((t) => !found.has(t));
  if (missing.length) throw notADomain(`it has no disk with target ${missing.join(', ')}`);
  return new Builder({ headless: true }).buildObject({ domain });
}

async function readDomainNode(xml: string): Promise<XmlNode> {
  let root: Record<string, XmlNode> | null;
  try {
    root = (await parseStringPromise(xml)) as Record<string, XmlNode> | null;
  } catch (err) {
    throw notADomain(`it is not XML (${String(err instanceof Error ? err.message : err).split('\n')[0]})`, err);
  }
  const domain = root?.domain;
  if (!domain || typeof domain !== 'object') throw notADomain('its root element is not <domain>');
  return domain;
}

function diskNodes(domain: XmlNode): XmlNode[] {
  const devices = first(domain, 'devices');
  return devices ? children(devices, 'disk') : [];
}

/** One <disk>: takeable, or the reason it is not. */
function judgeDisk(node: XmlNode, index: number): DomainDisk | SkippedDisk {
  const target = attr(first(node, 'target'), 'dev') ?? `disk ${index + 1}`;
  const device = node.$?.device ?? 'disk';
  const type = node.$?.type ?? 'file';
  const skip = (reason: string): SkippedDisk => ({ target, reason });
  if (device === 'cdrom' || device === 'floppy') return skip(`a ${device}`);
  if (device === 'lun') return skip('a SCSI LUN passed through to the guest');
  if (device !== 'disk') return skip(`device type '${device}' is not a disk`);
  if (first(node, 'readonly') !== undefined) return skip('read-only');
  if (first(node, 'shareable') !== undefined) return skip('shareable: other domains may use it');
  if (type === 'network') return skip(`a network disk (${attr(first(node, 'source'), 'protocol') ?? 'unknown protocol'})`);
  if (type !== 'file' && type !== 'block') return skip(`disk type '${type}' is not supported (only file and block)`);
  const path = attr(first(node, 'source'), type === 'file' ? 'file' : 'dev');
  if (!path) return skip('it has no source');
  if (!path.startsWith('/')) return skip(`its source ${path} is not an absolute path`);
  const format = attr(first(node, 'driver'), 'type') ?? 'raw';
  const backing = first(node, 'backingStore');
  const hasBacking = backing !== undefined && first(backing, 'source') !== undefined;
  return { target, kind: type, path, format, hasBacking };
}

function children(node: XmlNode, name: string): XmlNode[] {
  const value = node[name];
  if (!Array.isArray(value)) return [];
  // An element with neither attributes nor children comes back as a string ('' or its text).
  return value.map((v) => (typeof v === 'object' && v !== null ? (v as XmlNode) : { _: String(v) }));
}

function first(node: XmlNode | undefined, name: string): XmlNode | undefined {
  return node ? children(node, name)[0] : undefined;
}

function attr(node: XmlNode | undefined, name: string): string | undefined {
  const value = node?.$?.[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function text(node: XmlNode | undefined): string | undefined {
  const value = node?._?.trim();
  return value ? value : undefined;
}

function notADomain(why: string, cause?: unknown): SparsifyError {
  return new SparsifyError('BAD_DOMAIN', `the domain definition cannot be read: ${why}`, cause === undefined ? {} : { cause });
}
