/**
 * An independent checker of disk images against the manifest scripts/make-image wrote.
 *
 * It deliberately imports nothing from src/: it is the judge of the product, so it must not share
 * the product's decoders or its bugs. It reads filesystems the way a user would: the kernel (or
 * ntfs-3g, or mtools) mounts them read-only, the filesystems' own fsck tools check them.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A filesystem or swap area the fixture holds, as recorded by scripts/make-image. */
export interface ManifestVolume {
  /** libguestfs name: /dev/sda (whole disk), /dev/sdaN (GPT entry index + 1; MBR logical from 5). */
  readonly name: string;
  readonly fs: 'ext4' | 'ext3' | 'ext2' | 'xfs' | 'ntfs' | 'vfat' | 'swap' | 'btrfs';
  readonly label: string;
  readonly uuid: string;
  readonly offsetBytes: number;
  readonly sizeBytes: number;
  /** Space the kept files take (du), for size expectations. */
  readonly liveBytes: number;
  /** sha256 of the swap header page (the first 4096 bytes of the area). */
  readonly swapHeaderSha256?: string;
  /** Regular files: path relative to the filesystem root → sha256 of the content. */
  readonly files: Readonly<Record<string, string>>;
  /** Symbolic links: path relative to the root → target. */
  readonly symlinks: Readonly<Record<string, string>>;
}

/** What scripts/make-image writes to OUT.manifest.json. */
export interface Manifest {
  readonly version: 1;
  readonly layout: 'gpt' | 'mbr' | 'whole';
  readonly format: 'raw' | 'qcow2';
  readonly virtualSizeBytes: number;
  readonly seed: number;
  readonly fillMiB: number;
  readonly garbageMiB: number;
  /** The table's sectors (GPT: LBA 0..33 and the last 33 LBAs; MBR: sector 0 and each EBR). */
  readonly partitionTable: {
    readonly kind: 'gpt' | 'mbr';
    readonly sha256: string;
    readonly ranges: readonly { readonly offsetBytes: number; readonly sizeBytes: number }[];
  } | null;
  readonly volumes: readonly ManifestVolume[];
}

/** The verdict on one volume. */
export interface VolumeVerdict {
  readonly name: string;
  readonly fs: string;
  readonly ok: boolean;
  readonly problems: string[];
  /** Regular files whose content was hashed and compared. */
  readonly filesChecked: number;
}

/** The verdict on a whole image: ok only when every check passed. */
export interface VerifyResult {
  readonly ok: boolean;
  /** Every problem, each naming the volume (or the partition table) and the file. */
  readonly problems: string[];
  readonly perVolume: VolumeVerdict[];
}

interface ToolResult {
  readonly code: number;
  readonly output: string;
}

const SWAP_PAGE_BYTES = 4096;
/** mkswap writes "SWAPSPACE2" at the end of the first page (linux/swap.h, union swap_header). */
const SWAP_MAGIC = 'SWAPSPACE2';

/** Runs a program with an argv array; resolves with its exit code and combined output. */
function runTool(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(file, args, { maxBuffer: 64 << 20, env: env ? { ...process.env, ...env } : process.env }, (error, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      if (!error) return resolve({ code: 0, output });
      const code = typeof error.code === 'number' ? error.code : -1;
      resolve({ code, output: `${output}${code === -1 ? String(error.message) : ''}` });
    });
  });
}

/** Like runTool, but a non-zero exit is an exception carrying the argv and the output tail. */
async function mustRun(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const result = await runTool(file, args, env);
  if (result.code !== 0) {
    throw new Error(`${file} ${args.join(' ')} exited ${result.code}: ${tail(result.output)}`);
  }
  return result.output;
}

function tail(text: string, lines = 4): string {
  return text.trim().split('\n').slice(-lines).join(' | ');
}

/**
 * Read size for hashing: tests hash 2-3 GiB images several times each; 1 MiB reads take half the
 * CPU and wall time of the stream's default 64 KiB on a loaded host.
 */
const HASH_CHUNK_BYTES = 1 << 20;

/** The sha256 (hex) of a file's content. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: HASH_CHUNK_BYTES })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Bytes the file occupies on the host (st_blocks × 512); for qcow2 this is what `qemu-img info`
 * calls actual-size, so one definition serves both formats.
 */
export async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

/** Reads and minimally checks a manifest written by scripts/make-image. */
export async function readManifest(manifestPath: string): Promise<Manifest> {
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
  if (manifest.version !== 1 || !Array.isArray(manifest.volumes)) {
    throw new Error(`${manifestPath}: not a make-image manifest (version ${String(manifest.version)})`);
  }
  return manifest;
}

/** Releases resources last-in first-out; a failure is recorded, never thrown over the first error. */
class Cleanup {
  private readonly steps: (() => Promise<void>)[] = [];
  readonly failures: string[] = [];
  push(step: () => Promise<void>): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    while (this.steps.length) {
      const step = this.steps.pop()!;
      try {
        await step();
      } catch (error) {
        this.failures.push(String(error));
      }
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Serves the image read-only as a FUSE file with qemu-storage-daemon. `--daemonize` returns only
 * once the export is mounted, so the file is ready when this resolves.
 */
async function openFuseExport(imagePath: string, format: 'raw' | 'qcow2', dir: string, cleanup: Cleanup): Promise<string> {
  const mountpoint = join(dir, 'disk');
  const pidfile = join(dir, 'qsd.pid');
  await writeFile(mountpoint, '');
  await mustRun('qemu-storage-daemon', [
    '--blockdev', JSON.stringify({ driver: 'file', 'node-name': 'file0', filename: imagePath, 'read-only': true }),
    '--blockdev', JSON.stringify({ driver: format, 'node-name': 'fmt0', file: 'file0', 'read-only': true }),
    '--export', `type=fuse,id=exp0,node-name=fmt0,mountpoint=${mountpoint},writable=off`,
    '--daemonize', '--pidfile', pidfile,
  ]);
  const pid = Number((await readFile(pidfile, 'utf8')).trim());
  cleanup.push(async () => {
    if (!processAlive(pid)) return;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && processAlive(pid); i++) await sleep(50);
    if (processAlive(pid)) {
      process.kill(pid, 'SIGKILL');
      throw new Error(`qemu-storage-daemon ${pid} ignored SIGTERM for 5 s; killed`);
    }
  });
  return mountpoint;
}

async function attachLoop(file: string, volume: ManifestVolume, cleanup: Cleanup): Promise<string> {
  const device = (await mustRun('losetup', [
    '--read-only', '--find', '--show',
    '--offset', String(volume.offsetBytes), '--sizelimit', String(volume.sizeBytes), file,
  ])).trim();
  cleanup.push(async () => {
    if (volume.fs === 'btrfs') await runTool('btrfs', ['device', 'scan', '--forget', device]);
    await mustRun('losetup', ['--detach', device]);
  });
  return device;
}

/** The filesystem's own checker, never allowed to write (the loop device is read-only too). */
async function fsckVolume(volume: ManifestVolume, device: string): Promise<string | undefined> {
  const argv: Record<Exclude<ManifestVolume['fs'], 'swap'>, [string, string[]]> = {
    ext2: ['e2fsck', ['-f', '-n', device]],
    ext3: ['e2fsck', ['-f', '-n', device]],
    ext4: ['e2fsck', ['-f', '-n', device]],
    xfs: ['xfs_repair', ['-n', device]],
    btrfs: ['btrfs', ['check', '--readonly', device]],
    ntfs: ['ntfsfix', ['-n', device]],
    vfat: ['fsck.fat', ['-n', device]],
  };
  if (volume.fs === 'swap') return undefined;
  const [tool, args] = argv[volume.fs];
  const result = await runTool(tool, args);
  return result.code === 0 ? undefined : `${tool} exited ${result.code}: ${tail(result.output)}`;
}

async function mountVolume(volume: ManifestVolume, device: string, mnt: string, cleanup: Cleanup): Promise<void> {
  await mkdir(mnt, { recursive: true });
  if (volume.fs === 'ntfs') {
    await mustRun('ntfs-3g', ['-o', 'ro', device, mnt]);
  } else {
    // noload / norecovery: a read-only check must not replay a journal, or it would judge the
    // replayed state rather than the bytes in the image.
    const options: Record<string, [string, string]> = {
      ext2: ['ext4', 'ro,noload'],
      ext3: ['ext4', 'ro,noload'],
      ext4: ['ext4', 'ro,noload'],
      xfs: ['xfs', 'ro,norecovery,nouuid'],
      btrfs: ['btrfs', 'ro'],
    };
    const [type, opts] = options[volume.fs]!;
    await mustRun('mount', ['-t', type, '-o', opts, device, mnt]);
  }
  cleanup.push(async () => {
    const result = await runTool('umount', [mnt]);
    if (result.code !== 0) {
      await runTool('umount', ['-l', mnt]);
      throw new Error(`umount ${mnt}: ${tail(result.output)}`);
    }
  });
}

/** make-image's read-only btrfs snapshots (`snap-ro…` at the top level) must still be read-only subvolumes. */
async function checkReadOnlySnapshots(volume: ManifestVolume, mnt: string, problems: string[]): Promise<void> {
  for (const name of (await readdir(mnt)).filter((n) => n.startsWith('snap-ro'))) {
    const result = await runTool('btrfs', ['property', 'get', '-ts', join(mnt, name), 'ro']);
    if (result.code !== 0 || !/^ro=true$/m.test(result.output)) {
      problems.push(`${volume.name} (btrfs): ${name} is no longer a read-only snapshot (${tail(result.output)})`);
    }
  }
}

/** Files (sha256) and symlinks (target) below root, keyed by path relative to root. */
async function readTree(root: string): Promise<{ files: Map<string, string>; symlinks: Map<string, string> }> {
  const files = new Map<string, string>();
  const symlinks = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(root, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isSymbolicLink()) symlinks.set(path, await readlink(join(root, path)));
      else if (entry.isFile()) files.set(path, await sha256File(join(root, path)));
      else files.set(path, `not a regular file (${(await lstat(join(root, path))).mode.toString(8)})`);
    }
  };
  await walk('');
  return { files, symlinks };
}

function compareTree(
  volume: ManifestVolume,
  found: { files: Map<string, string>; symlinks: Map<string, string> },
  problems: string[],
): void {
  const at = `${volume.name} (${volume.fs})`;
  for (const [path, sha] of Object.entries(volume.files)) {
    const got = found.files.get(path);
    if (got === undefined) problems.push(`${at}: file ${path} is missing`);
    else if (got !== sha) problems.push(`${at}: file ${path} differs (sha256 ${got}, expected ${sha})`);
  }
  for (const path of found.files.keys()) {
    if (!(path in volume.files)) problems.push(`${at}: file ${path} is not in the manifest`);
  }
  for (const [path, target] of Object.entries(volume.symlinks)) {
    const got = found.symlinks.get(path);
    if (got === undefined) problems.push(`${at}: symlink ${path} is missing`);
    else if (got !== target) problems.push(`${at}: symlink ${path} points to ${got}, expected ${target}`);
  }
  for (const path of found.symlinks.keys()) {
    if (!(path in volume.symlinks)) problems.push(`${at}: symlink ${path} is not in the manifest`);
  }
}

/** Reads `sizeBytes` at `offsetBytes` of a file (fewer at its end). */
export async function readBytes(file: string, offsetBytes: number, sizeBytes: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(sizeBytes);
    const { bytesRead } = await handle.read(buffer, 0, sizeBytes, offsetBytes);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

async function verifySwap(disk: string, volume: ManifestVolume, problems: string[]): Promise<void> {
  const header = await readBytes(disk, volume.offsetBytes, SWAP_PAGE_BYTES);
  const sha = createHash('sha256').update(header).digest('hex');
  if (header.subarray(SWAP_PAGE_BYTES - SWAP_MAGIC.length).toString('latin1') !== SWAP_MAGIC) {
    problems.push(`${volume.name} (swap): no ${SWAP_MAGIC} signature`);
  }
  if (sha !== volume.swapHeaderSha256) {
    problems.push(`${volume.name} (swap): header differs (sha256 ${sha}, expected ${volume.swapHeaderSha256})`);
  }
}

/** vfat has no kernel driver here: fsck.fat reads the loop device, mtools copies every file out. */
async function readVfatTree(disk: string, volume: ManifestVolume, dir: string) {
  const out = join(dir, 'vfat');
  await mkdir(out, { recursive: true });
  await mustRun('mcopy', ['-s', '-n', '-m', '-i', `${disk}@@${volume.offsetBytes}`, '::/*', `${out}/`], {
    MTOOLS_SKIP_CHECK: '1',
  });
  const tree = await readTree(out);
  await rm(out, { recursive: true, force: true });
  return tree;
}

async function verifyVolume(disk: string, volume: ManifestVolume, dir: string): Promise<VolumeVerdict> {
  const problems: string[] = [];
  let filesChecked = 0;
  const cleanup = new Cleanup();
  try {
    if (volume.fs === 'swap') {
      await verifySwap(disk, volume, problems);
    } else {
      const device = await attachLoop(disk, volume, cleanup);
      const fsck = await fsckVolume(volume, device);
      if (fsck) problems.push(`${volume.name} (${volume.fs}): fsck: ${fsck}`);
      let tree;
      if (volume.fs === 'vfat') {
        tree = await readVfatTree(disk, volume, dir);
      } else {
        const mnt = join(dir, 'mnt');
        await mountVolume(volume, device, mnt, cleanup);
        tree = await readTree(mnt);
        if (volume.fs === 'btrfs') await checkReadOnlySnapshots(volume, mnt, problems);
      }
      filesChecked = tree.files.size;
      compareTree(volume, tree, problems);
    }
  } catch (error) {
    problems.push(`${volume.name} (${volume.fs}): ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await cleanup.run();
    for (const failure of cleanup.failures) problems.push(`${volume.name} (${volume.fs}): cleanup: ${failure}`);
  }
  return { name: volume.name, fs: volume.fs, ok: problems.length === 0, problems, filesChecked };
}

async function verifyPartitionTable(disk: string, manifest: Manifest, problems: string[]): Promise<void> {
  const table = manifest.partitionTable;
  if (!table) return;
  const hash = createHash('sha256');
  for (const range of table.ranges) hash.update(await readBytes(disk, range.offsetBytes, range.sizeBytes));
  const sha = hash.digest('hex');
  if (sha !== table.sha256) {
    problems.push(`partition table (${table.kind}): sectors differ (sha256 ${sha}, expected ${table.sha256})`);
  }
}

/**
 * Checks an image against its manifest: virtual size, partition-table sectors, and for every
 * volume fsck, every file's sha256 (missing, extra and different files named), symlinks and the
 * swap header. Everything it sets up is released before it resolves, even on failure.
 */
export async function verifyImage(imagePath: string, format: 'raw' | 'qcow2', manifestPath: string): Promise<VerifyResult> {
  const manifest = await readManifest(manifestPath);
  const problems: string[] = [];
  const perVolume: VolumeVerdict[] = [];
  const dir = await mkdtemp('/tmp/sparsify-fix-verify-');
  const cleanup = new Cleanup();
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  try {
    const disk = await openFuseExport(imagePath, format, dir, cleanup);
    const sizeBytes = (await stat(disk)).size;
    if (sizeBytes !== manifest.virtualSizeBytes) {
      problems.push(`image: virtual size ${sizeBytes}, expected ${manifest.virtualSizeBytes}`);
    }
    await verifyPartitionTable(disk, manifest, problems);
    for (const volume of manifest.volumes) {
      const verdict = await verifyVolume(disk, volume, dir);
      perVolume.push(verdict);
      problems.push(...verdict.problems);
    }
  } catch (error) {
    problems.push(`image: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await cleanup.run();
    for (const failure of cleanup.failures) problems.push(`cleanup: ${failure}`);
  }
  return { ok: problems.length === 0, problems, perVolume };
}
