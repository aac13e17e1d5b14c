/**
 * A domain's disks → one validated run per disk: in place on the disk itself, or a copy into
 * the output directory named after the disk. Pure: the options the CLI validated once (with a
 * placeholder disk) are given each disk's path and format from the domain definition.
 */
import { basename, join } from 'node:path';
import { SparsifyError } from '../errors.js';
import type { Options } from '../options.js';
import type { DomainDefinition, DomainDisk } from './domain-xml.js';

/** One disk and the run that sparsifies it. */
export interface DiskRun {
  readonly disk: DomainDisk;
  readonly options: Options;
}

/**
 * The runs of a domain's takeable disks, in the definition's order. `base` is a validated run
 * whose input (and output) stand for "each disk"; copy mode needs `outputDir`. Its JSON report
 * is the domain's, not any one disk's, so the runs write none.
 */
export function diskRuns(def: DomainDefinition, base: Options, outputDir?: string): DiskRun[] {
  if (def.disks.length === 0) {
    const why = def.skipped.map((s) => `${s.target}: ${s.reason}`).join('; ');
    throw new SparsifyError('UNSUPPORTED', `domain ‘${def.name}’ has no disk sparsify can take${why ? ` (${why})` : ''}`);
  }
  const { jsonFile: _json, ...common } = base;
  if (common.mode === 'in-place') {
    return def.disks.map((disk) => ({ disk, options: { ...common, input: disk.path, format: disk.format } }));
  }
  if (outputDir === undefined) throw new SparsifyError('USAGE', 'copy mode with -d needs --output-dir DIR');
  const names = outputNames(def.disks);
  return def.disks.map((disk) => ({
    disk,
    options: { ...common, input: disk.path, format: disk.format, output: join(outputDir, names.get(disk.target)!) },
  }));
}

/**
 * Each disk's output file name: its source's base name (a block device's gets its format as
 * extension); where two disks would share a name, each such name is prefixed with its target.
 */
export function outputNames(disks: readonly DomainDisk[]): Map<string, string> {
  const plain = disks.map((d) => (d.kind === 'block' ? `${basename(d.path)}.${d.format}` : basename(d.path)));
  const count = new Map<string, number>();
  for (const name of plain) count.set(name, (count.get(name) ?? 0) + 1);
  return new Map(disks.map((d, i) => [d.target, count.get(plain[i]!)! > 1 ? `${d.target}-${plain[i]}` : plain[i]!]));
}
