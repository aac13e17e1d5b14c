/** --inspect's three ways to show what it found: a table for people, JSON, and virt-inspector's XML. */
import { Builder } from 'xml2js';
import type { DiskInspection, InspectedFilesystem, InspectedOs } from './types.js';

/** Columns padded to their widest cell, two spaces apart. */
function columns(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i]!) : c)).join('  ').trimEnd());
}

function filesystemRows(filesystems: readonly InspectedFilesystem[]): string[] {
  return columns([['Filesystem', 'Type', 'Label', 'UUID'], ...filesystems.map((f) => [f.device, f.type ?? '-', f.label ?? '-', f.uuid ?? '-'])]);
}

function osLines(os: InspectedOs): string[] {
  const version = `${os.majorVersion}.${os.minorVersion}`;
  const fields: [string, string | undefined][] = [
    ['Root', os.root],
    ['OS', os.type],
    ['Distribution', os.distro],
    ['Version', version],
    ['Product', os.productName],
    ['Variant', os.productVariant],
    ['Hostname', os.hostname],
    ['Architecture', os.arch],
    ['Packages', os.packageFormat && `${os.packageFormat} (${os.packageManagement ?? 'unknown manager'})`],
    ['osinfo', os.osinfo],
  ];
  const width = Math.max(...fields.map(([k]) => k.length)) + 1;
  const lines = fields.filter(([, v]) => v !== undefined).map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`);
  const mounts = os.mountpoints.length === 0 ? ['Mount table: none found'] : ['Mount table:', ...columns(os.mountpoints.map((m) => [`  ${m.mountpoint}`, m.device]))];
  return [...lines, ...mounts];
}

/** The table a person reads: each operating system, then every filesystem on the disk. */
export function inspectionTable(result: DiskInspection): string {
  const out = [`${result.disk} (${result.format})`, ''];
  if (result.operatingSystems.length === 0) out.push('No operating system found.', '');
  for (const os of result.operatingSystems) out.push(...osLines(os), '');
  out.push(...(result.filesystems.length === 0 ? ['No filesystem found.'] : filesystemRows(result.filesystems)));
  return `${out.join('\n')}\n`;
}

/** The JSON document (the same fields, camelCase, absent when unknown). */
export function inspectionJson(result: DiskInspection): string {
  return `${JSON.stringify(result, null, 2)}\n`;
}

/** One <operatingsystem> element as virt-inspector writes it (applications and icon left out). */
function osElement(os: InspectedOs): Record<string, unknown> {
  const optional = (name: string, value: string | undefined) => (value === undefined ? {} : { [name]: value });
  return {
    root: os.root,
    name: os.type,
    ...optional('arch', os.arch),
    ...optional('distro', os.distro),
    ...optional('product_name', os.productName),
    ...optional('product_variant', os.productVariant),
    major_version: String(os.majorVersion),
    minor_version: String(os.minorVersion),
    ...optional('package_format', os.packageFormat),
    ...optional('package_management', os.packageManagement),
    ...optional('hostname', os.hostname),
    ...optional('osinfo', os.osinfo),
    mountpoints: { mountpoint: os.mountpoints.map((m) => ({ $: { dev: m.device }, _: m.mountpoint })) },
    filesystems: {
      filesystem: os.filesystems.map((f) => ({
        $: { dev: f.device },
        ...optional('type', f.type),
        ...optional('label', f.label),
        ...optional('uuid', f.uuid),
      })),
    },
  };
}

/** virt-inspector's XML (its RELAX NG schema, virt-inspector.rng); at least one operating system. */
export function inspectionXml(result: DiskInspection): string {
  const builder = new Builder({ rootName: 'operatingsystems', xmldec: { version: '1.0' } });
  return `${builder.buildObject({ operatingsystem: result.operatingSystems.map(osElement) })}\n`;
}
