/**
 * A 1 TiB sparse image (GPT, four ext4 partitions of a quarter of the disk each) holding a few
 * GiB of files spread across the disk, as raw and as qcow2, built in a directory the caller
 * removes. make-image would write 16 GiB of inode tables (it turns lazy init off for
 * reproducible bytes); here the inode tables stay holes (lazy_itable_init, mounted
 * noinit_itable), so the raw file holds only the files and ext4's bitmaps and descriptors. The
 * partitions put the data at four places a quarter of a TiB apart (one ext4 over the whole disk
 * would put every file into its first block groups, whatever the directories).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const FILE_BYTES = 256 * MiB;
const PARTITIONS = 4;

/** What was built. */
export interface BigImage {
  readonly rawPath: string;
  readonly qcow2Path: string;
  readonly virtualSizeBytes: number;
  /** The bytes of the files (the image holds some MiB of ext4 metadata more). */
  readonly fileBytes: number;
  /** The allocated (data) bytes of the raw image in each quarter of the disk. */
  readonly dataBytesPerQuarter: readonly number[];
}

/**
 * Builds in `dir` a `sizeBytes` image whose partitions hold `files` files of 256 MiB between
 * them: every third one pseudo-random (AES-CTR: incompressible), the others text
 * (compressible), as --compress meets on real disks.
 */
export async function buildBigImage(dir: string, sizeBytes = 1024 ** 4, files = 12): Promise<BigImage> {
  const rawPath = join(dir, 'big.raw');
  const qcow2Path = join(dir, 'big.qcow2');
  await run('truncate', ['-s', String(sizeBytes), rawPath]);
  const quarterMiB = Math.floor(sizeBytes / PARTITIONS / MiB);
  const sgdisk = [];
  for (let p = 1; p <= PARTITIONS; p++) sgdisk.push('-n', `${p}:0:${p === PARTITIONS ? '0' : `+${quarterMiB - 2}M`}`, '-t', `${p}:8300`);
  await run('sgdisk', [...sgdisk, rawPath]);
  for (let p = 0; p < PARTITIONS; p++) {
    const mine = Array.from({ length: files }, (_, i) => i).filter((i) => i % PARTITIONS === p);
    await fillPartition(dir, rawPath, p + 1, mine);
  }
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-W', rawPath, qcow2Path]);
  return { rawPath, qcow2Path, virtualSizeBytes: sizeBytes, fileBytes: files * FILE_BYTES, dataBytesPerQuarter: await dataPerQuarter(rawPath, sizeBytes) };
}

async function fillPartition(dir: string, rawPath: string, partition: number, fileNumbers: number[]): Promise<void> {
  const info = (await run('sgdisk', ['-i', String(partition), rawPath])).stdout;
  const first = Number(/First sector: (\d+)/.exec(info)?.[1]);
  const last = Number(/Last sector: (\d+)/.exec(info)?.[1]);
  const loop = (await run('losetup', ['--show', '-f', '-o', String(first * 512), '--sizelimit', String((last - first + 1) * 512), rawPath])).stdout.trim();
  const mnt = await mkdtemp(join(dir, 'mnt-'));
  let mounted = false;
  try {
    await run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', loop]);
    await run('mount', ['-o', 'noinit_itable', loop, mnt]);
    mounted = true;
    for (const i of fileNumbers) await writeFile(join(mnt, `data-${i}.bin`), i);
  } finally {
    if (mounted) await run('umount', [mnt]);
    await run('losetup', ['-d', loop]);
    await rm(mnt, { recursive: true, force: true });
  }
}

async function writeFile(path: string, i: number): Promise<void> {
  const key = (0x10 + i).toString(16).padStart(32, '0');
  const cmd =
    i % 3 === 0
      ? `head -c ${FILE_BYTES} /dev/zero | openssl enc -aes-128-ctr -nosalt -K ${key} -iv 00000000000000000000000000000000 > "$0"`
      : `yes "file ${i}: a line of text as logs and sources hold, compressible" | head -c ${FILE_BYTES} > "$0"`;
  await run('sh', ['-c', cmd, path]);
}

async function dataPerQuarter(rawPath: string, sizeBytes: number): Promise<number[]> {
  const map = JSON.parse((await run('qemu-img', ['map', '--output=json', '-f', 'raw', rawPath], { maxBuffer: 64 * MiB })).stdout) as {
    start: number;
    length: number;
    data: boolean;
  }[];
  const quarter = sizeBytes / 4;
  const perQuarter = [0, 0, 0, 0];
  for (const e of map.filter((x) => x.data)) {
    for (let q = 0; q < 4; q++) perQuarter[q]! += Math.max(0, Math.min(e.start + e.length, (q + 1) * quarter) - Math.max(e.start, q * quarter));
  }
  return perQuarter;
}
