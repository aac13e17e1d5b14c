/**
 * The LUKS fixture disk of scripts/make-luks (built in the libguestfs appliance, which has
 * dm-crypt), cached under fixtureDir() by the script's text, and the truth cryptsetup and the
 * opened mappings told about each volume.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { acquireLock, exists, fixtureDir, REPO_ROOT } from './image.js';

const execFileAsync = promisify(execFile);
const MAKE_LUKS = join(REPO_ROOT, 'scripts', 'make-luks');

/** The fixture's volumes: GPT partition number, passphrase, and what make-luks made. */
export const LUKS_VOLUMES = [
  { name: 'l1xts', partition: 1, passphrase: 'luks1-pass-phrase', version: 1, cipher: 'aes-xts-plain64', sectorBytes: 512 },
  { name: 'l2id', partition: 2, passphrase: 'luks2-argon2id', version: 2, cipher: 'aes-xts-plain64', sectorBytes: 4096 },
  { name: 'l1cbc', partition: 3, passphrase: 'cbc_essiv_key', version: 1, cipher: 'aes-cbc-essiv:sha256', sectorBytes: 512 },
  { name: 'l2i', partition: 4, passphrase: 'second.slot.key', version: 2, cipher: 'aes-cbc-essiv:sha256', sectorBytes: 512 },
] as const;

/** The fifth volume: LUKS2 holding an LVM PV, VG "vgl", whose LV "root" is ext4 (the installer layout in small). */
export const LUKS_LVM_VOLUME = { name: 'l2lvm', partition: 5, passphrase: 'lvm-inside', version: 2, cipher: 'aes-xts-plain64', sectorBytes: 512 } as const;

/** What the appliance saw for one volume. */
export interface LuksTruth {
  /** sha256 (hex) of the first 4 MiB of plaintext. */
  readonly plainSha256: string;
  /** The plaintext bytes 1024..2047: the ext4 superblock. */
  readonly superblock: Uint8Array;
  readonly plainBytes: number;
  /** luksDump --dump-volume-key, hex. */
  readonly volumeKeyHex: string;
  readonly uuid: string;
  /** dumpe2fs -h of the ext4 inside (of /dev/vgl/root for l2lvm): free blocks × block size. */
  readonly extFreeBytes: number;
  /** l2lvm only: the VG's free extents in bytes (vgs). */
  readonly vgFreeBytes?: number;
}

/** Parses the "@@ KIND NAME" transcript of make-luks. */
export function parseLuksTruth(text: string): Map<string, LuksTruth> {
  const sections = new Map<string, string[]>();
  let current: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^@@ (\w+) (\w+)$/.exec(line);
    if (m) sections.set(`${m[1]} ${m[2]}`, (current = []));
    else current.push(line);
  }
  const section = (kind: string, name: string) => {
    const lines = sections.get(`${kind} ${name}`);
    if (!lines) throw new Error(`make-luks transcript has no "${kind} ${name}"`);
    return lines;
  };
  const truths = new Map<string, LuksTruth>();
  for (const { name } of [...LUKS_VOLUMES, LUKS_LVM_VOLUME]) {
    const ext4 = section('ext4', name).join('\n');
    const field = (label: string) => Number(new RegExp(`^${label}:\\s*(\\d+)`, 'm').exec(ext4)?.[1]);
    const vg = sections.get(`vg ${name}`)?.[0]?.trim().split(/\s+/).map(Number);
    const dump = section('dump', name).join('\n');
    const keyText = /MK dump:([\s0-9a-f]*)/.exec(dump)?.[1] ?? '';
    truths.set(name, {
      plainSha256: section('plain', name).join(' ').trim().split(/\s+/)[0]!,
      superblock: Uint8Array.from(section('superblock', name).join(' ').trim().split(/\s+/).map((h) => parseInt(h, 16))),
      plainBytes: Number(section('size', name).join('').trim()),
      volumeKeyHex: keyText.replace(/\s+/g, ''),
      uuid: /UUID:\s*(\S+)/.exec(dump)?.[1] ?? '',
      extFreeBytes: field('Free blocks') * field('Block size'),
      ...(vg ? { vgFreeBytes: vg[0]! * vg[1]! } : {}),
    });
  }
  return truths;
}

/** Builds (once per script version) or reuses the LUKS fixture; returns its path and truths. */
export async function buildLuksFixture(): Promise<{ imagePath: string; truth: Map<string, LuksTruth> }> {
  const key = createHash('sha256').update(await readFile(MAKE_LUKS)).digest('hex').slice(0, 12);
  const dir = fixtureDir();
  await mkdir(dir, { recursive: true });
  const imagePath = join(dir, `luks-${key}.img`);
  const truthPath = `${imagePath}.truth.txt`; // renamed into place last by make-luks
  if (!(await exists(truthPath))) {
    const release = await acquireLock(join(dir, `luks-${key}.lock`));
    try {
      if (!(await exists(truthPath))) await execFileAsync(MAKE_LUKS, [imagePath], { maxBuffer: 16 << 20 });
    } finally {
      await release();
    }
  }
  return { imagePath, truth: parseLuksTruth(await readFile(truthPath, 'utf8')) };
}

/** The installer layout of `scripts/make-luks --installer`: its passphrases and what it wrote and deleted. */
export const LUKS_INSTALLER = {
  /** sda2: LUKS2 Argon2id holding VG vgi (root ext4 LV, swap LV). */
  luks2Passphrase: 'installer-argon2id',
  /** sda3: LUKS1 PBKDF2 holding ext4. */
  luks1Passphrase: 'luks1-pbkdf2-pass',
} as const;

/** What the appliance saw on one installer disk, opened with its keys (make-luks installer_check). */
export interface InstallerCheck {
  /** fsck verdict per filesystem (boot, root, luks1): "clean" or "dirty". */
  readonly fsck: Readonly<Record<'boot' | 'root' | 'luks1', string>>;
  /** sha256sum lines of every regular file, per filesystem. */
  readonly files: Readonly<Record<'boot' | 'root' | 'luks1', string>>;
  readonly swapUuid: string;
  /** Byte ranges before each LUKS volume's data segment: header and key slots. */
  readonly headers: readonly { readonly offsetBytes: number; readonly sizeBytes: number }[];
  /** MiB written and deleted per filesystem (the built fixture only). */
  readonly deletedMiB: Readonly<Record<string, number>>;
}

/** Parses the "@@ …" transcript of one or more installer disks, in disk order. */
export function parseInstallerChecks(text: string): InstallerCheck[] {
  const deletedMiB: Record<string, number> = {};
  for (const m of text.matchAll(/^@@ deleted (\w+) (\d+)$/gm)) deletedMiB[m[1]!] = Number(m[2]);
  return text.split(/^@@ disk \w+$/m).slice(1).map((chunk) => {
    if (!/^@@ end \w+$/m.test(chunk)) throw new Error(`make-luks --check did not finish a disk:\n${chunk}`);
    const after = (label: string) => {
      const m = new RegExp(`^@@ ${label}\\n([\\s\\S]*?)(?=^@@ )`, 'm').exec(chunk);
      if (!m) throw new Error(`make-luks transcript has no "${label}":\n${chunk}`);
      return m[1]!.trim();
    };
    const number = (label: string) => Number(new RegExp(`^@@ ${label} (\\d+)$`, 'm').exec(chunk)?.[1] ?? NaN);
    const header = (n: 2 | 3) => ({ offsetBytes: number(`start${n}`) * 512, sizeBytes: number(`dataoffset${n}`) * 512 });
    return {
      fsck: { boot: after('fsck boot'), root: after('fsck root'), luks1: after('fsck luks1') },
      files: { boot: after('files boot'), root: after('files root'), luks1: after('files luks1') },
      swapUuid: after('swap'),
      headers: [header(2), header(3)],
      deletedMiB,
    };
  });
}

/** Builds (once per script version) or reuses the installer-layout fixture; returns its path and what it holds. */
export async function buildLuksInstaller(): Promise<{ imagePath: string; truth: InstallerCheck }> {
  const key = createHash('sha256').update(await readFile(MAKE_LUKS)).digest('hex').slice(0, 12);
  const dir = fixtureDir();
  await mkdir(dir, { recursive: true });
  const imagePath = join(dir, `luks-installer-${key}.img`);
  const truthPath = `${imagePath}.truth.txt`; // renamed into place last by make-luks
  if (!(await exists(truthPath))) {
    const release = await acquireLock(join(dir, `luks-installer-${key}.lock`));
    try {
      if (!(await exists(truthPath))) await execFileAsync(MAKE_LUKS, ['--installer', imagePath], { maxBuffer: 16 << 20 });
    } finally {
      await release();
    }
  }
  return { imagePath, truth: parseInstallerChecks(await readFile(truthPath, 'utf8'))[0]! };
}

/** Opens each installer image (raw or qcow2, read-only) with its keys in ONE appliance launch. */
export async function checkInstallerImages(paths: readonly string[]): Promise<InstallerCheck[]> {
  const { stdout } = await execFileAsync(MAKE_LUKS, ['--check', ...paths], { maxBuffer: 16 << 20 });
  const checks = parseInstallerChecks(stdout);
  if (checks.length !== paths.length) throw new Error(`make-luks --check: ${checks.length} disks checked of ${paths.length}:\n${stdout}`);
  return checks;
}

/** Rewrites the primary LUKS2 header's JSON with `edit`, bumps its seqid and fixes its checksum. */
export function forgePrimary(bytes: Uint8Array, edit: (json: string) => string): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  const hdrSize = Number(view.getBigUint64(8, false));
  const area = out.subarray(4096, hdrSize);
  const end = area.indexOf(0);
  const json = edit(new TextDecoder().decode(area.subarray(0, end)));
  area.fill(0);
  area.set(new TextEncoder().encode(json));
  view.setBigUint64(16, view.getBigUint64(16, false) + 1n, false);
  out.fill(0, 448, 512);
  out.set(createHash('sha256').update(out.subarray(0, hdrSize)).digest(), 448);
  return out;
}

/** sha256 of each byte range of a raw image. */
export async function rangeHashes(rawPath: string, ranges: InstallerCheck['headers']): Promise<string[]> {
  await using file = await open(rawPath, 'r');
  const out: string[] = [];
  for (const r of ranges) {
    const bytes = Buffer.alloc(r.sizeBytes);
    await file.read(bytes, 0, r.sizeBytes, r.offsetBytes);
    out.push(createHash('sha256').update(bytes).digest('hex'));
  }
  return out;
}
