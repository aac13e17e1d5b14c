/**
 * `--ova`: packs the streamOptimized vmdk the copier wrote into an OVA — a POSIX ustar archive
 * holding, in the order DSP0243 requires, the OVF descriptor first, then the manifest (SHA256
 * of each other file, in the form ovftool writes and checks), then the disk. The disk is staged
 * in the run's work directory because the descriptor must state its size, known only once it
 * is written; the archive is written to the output's temporary name, which copy mode renames
 * into place on success and removes on failure, with the work directory.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { RunContext } from '../context.js';
import { fsyncFile } from '../util/fsync.js';

/** What goes into the OVA. */
export interface OvaSpec {
  /** The finished vmdk (as returned by {@link ovaDiskPath}). */
  readonly diskPath: string;
  /** The archive to write (the output's temporary name). */
  readonly ovaPath: string;
  /** The output as the user named it: the virtual system and the files inside are named after it. */
  readonly name: string;
  readonly virtualSizeBytes: number;
  /** Bytes of the disk that hold data (the descriptor's populatedSize). */
  readonly populatedBytes: number;
}

/** Where the disk of an OVA is written before packing: the work directory, named after the output. */
export function ovaDiskPath(workDir: string, output: string): string {
  return join(workDir, `${systemName(output)}-disk1.vmdk`);
}

/** Writes the descriptor and the manifest beside the disk, then the archive; fsynced. */
export async function writeOva(ctx: RunContext, spec: OvaSpec): Promise<void> {
  // tar and xml2js are read only by a run that writes an OVA, not by every copy.
  const [{ create: createTar }, { buildOvf }] = await Promise.all([import('tar'), import('./ovf.js')]);
  const dir = join(spec.diskPath, '..');
  const name = systemName(spec.name);
  const diskFile = basename(spec.diskPath);
  const ovfFile = `${name}.ovf`;
  const mfFile = `${name}.mf`;
  const ovf = buildOvf({
    name,
    diskFile,
    fileSizeBytes: (await stat(spec.diskPath)).size,
    capacityBytes: spec.virtualSizeBytes,
    populatedBytes: spec.populatedBytes,
  });
  await writeFile(join(dir, ovfFile), ovf);
  const manifest = [
    `SHA256(${ovfFile})= ${createHash('sha256').update(ovf).digest('hex')}`,
    `SHA256(${diskFile})= ${await sha256File(spec.diskPath)}`,
  ].join('\n');
  await writeFile(join(dir, mfFile), `${manifest}\n`);
  ctx.log.debug(`packing ${ovfFile}, ${mfFile}, ${diskFile} into ${spec.ovaPath}`);
  // portable: no owner names or ids of this host in the headers; ustar unless a size needs pax.
  await createTar({ file: spec.ovaPath, cwd: dir, portable: true, noDirRecurse: true }, [ovfFile, mfFile, diskFile]);
  await fsyncFile(spec.ovaPath);
}

/**
 * The virtual system's name: the output's file name without `.ova`, reduced to characters that
 * every importer and a ustar name field (100 bytes) take.
 */
export function systemName(output: string): string {
  const base = basename(output).replace(/\.ova$/i, '');
  const safe = base.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[.-]+/, '').slice(0, 64);
  return safe === '' ? 'disk' : safe;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
