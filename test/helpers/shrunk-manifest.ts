/**
 * A make-image manifest for a disk that --shrink rewrote: the same volumes and files, each at the
 * place the output's own partition table gives it (sfdisk --json), the output's virtual size, and
 * no partition-table checksum (the table was rewritten on purpose; sgdisk -v / sfdisk --verify
 * judge it). verifyImage then checks every file, symlink, swap header and fsck where they now are.
 */
import { execFile } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { readManifest, type Manifest } from './verify.js';

const execFileAsync = promisify(execFile);

interface SfdiskPart {
  readonly node: string;
  readonly start: number;
  readonly size: number;
}

/** Writes the manifest of `outRaw` (a raw shrunk disk) to `to`, from the input's manifest; returns it. */
export async function writeShrunkManifest(inputManifestPath: string, outRaw: string, to: string): Promise<Manifest> {
  const before = await readManifest(inputManifestPath);
  const { stdout } = await execFileAsync('sfdisk', ['--json', outRaw]);
  const table = (JSON.parse(stdout) as { partitiontable: { sectorsize?: number; partitions: SfdiskPart[] } }).partitiontable;
  const sector = table.sectorsize ?? 512;
  const byNumber = new Map(table.partitions.map((p) => [Number(/(\d+)$/.exec(p.node)![1]), p]));
  const volumes = before.volumes.map((v) => {
    const number = Number(/(\d+)$/.exec(v.name)![1]);
    const p = byNumber.get(number);
    if (!p) throw new Error(`${outRaw}: no partition ${number} for ${v.name}`);
    return { ...v, offsetBytes: p.start * sector, sizeBytes: p.size * sector };
  });
  const manifest: Manifest = { ...before, format: 'raw', virtualSizeBytes: (await stat(outRaw)).size, partitionTable: null, volumes };
  await writeFile(to, `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
