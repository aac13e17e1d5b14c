/**
 * `sparsify --shrink` on an ext4-on-LVM disk (issue 12: "the last LV, then the PV"). The disk is
 * built once by libguestfs (real LVM2 in its appliance; cached by recipe in SPARSIFY_FIXTURE_DIR):
 * 1 GiB GPT, /boot ext4 on sda1, a PV on sda2 whose VG holds a swap LV first and the ext4 root
 * LV after it. The same inspection runs in the appliance right after the build and once on OUT:
 * e2fsck -fn of both filesystems, the VG and LV names and UUIDs, the swap and filesystem UUIDs
 * and labels, and the sha256 of every file.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ShrinkReport, ShrinkVolumeReport } from '../../src/shrink/run.js';
import { fixtureDir } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';
import { runShrinkCli, SHRINK_RUN_MS } from '../helpers/shrink-run.js';
import { sha256File } from '../helpers/verify.js';

const GUESTFS_ENV = { ...process.env, LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
const MiB = 1024 * 1024;
const SWAP_MIB = 32;

/** The disk: /boot (128 MiB), then the PV up to the last usable sector of the GPT (1 GiB: 2097152 − 34); swap LV first, the root LV takes the rest; files in several directories (spread over block groups). */
const RECIPE = [
  'sparse', 'disk.img', '1G', ':', 'run', ':',
  'part-init', '/dev/sda', 'gpt', ':', 'part-add', '/dev/sda', 'p', '2048', '264191', ':', 'part-add', '/dev/sda', 'p', '264192', '2097118', ':',
  'mkfs', 'ext4', '/dev/sda1', 'label:boot', ':',
  'pvcreate', '/dev/sda2', ':', 'vgcreate', 'VG', '/dev/sda2', ':',
  'lvcreate', 'swap', 'VG', String(SWAP_MIB), ':', 'lvcreate-free', 'root', 'VG', '100', ':',
  'mkswap', '/dev/VG/swap', 'label:lvswap', ':', 'mkfs', 'ext4', '/dev/VG/root', 'label:root', ':',
  'mount', '/dev/VG/root', '/', ':', 'mkdir', '/boot', ':', 'mount', '/dev/sda1', '/boot', ':',
  'fill-pattern', 'kernel', '6M', '/boot/vmlinuz', ':', 'mkdir', '/boot/grub', ':', 'write', '/boot/grub/grub.cfg', 'set root=(lvm/VG-root)\n', ':',
  'fill-pattern', 'sparsify-lvm-keep', '24M', '/keep', ':', 'ln-s', '/keep', '/link', ':',
  ...[1, 2, 3, 4, 5, 6, 7, 8].flatMap((n) => ['mkdir', `/d${n}`, ':', 'fill-pattern', `dir-${n}-`, '2M', `/d${n}/data`, ':']),
  'fill', '1', '64M', '/garbage', ':', 'sync', ':', 'rm', '/garbage', ':',
  'mkdir', '/many', ':', 'fill-dir', '/many', '300', ':', 'write', '/etc-hostname', 'lvm-guest\n', ':',
  'umount-all', ':',
];

/** What the appliance says about a disk, the same after the shrink as before it (but the root LV's size). */
const INSPECT = [
  'echo', '==fsck', ':',
  'debug', 'sh', 'e2fsck -fn /dev/VG/root >/dev/null 2>&1; echo root=$?; e2fsck -fn "$(blkid -L boot)" >/dev/null 2>&1; echo boot=$?', ':',
  'echo', '==lvm', ':',
  'debug', 'sh', 'lvm vgs --noheadings -o vg_name,vg_uuid; lvm lvs --noheadings -o lv_name,lv_uuid,lv_attr', ':',
  'echo', '==ids', ':',
  'vfs-uuid', '/dev/VG/swap', ':', 'vfs-label', '/dev/VG/swap', ':', 'vfs-type', '/dev/VG/swap', ':',
  'vfs-uuid', '/dev/VG/root', ':', 'vfs-label', '/dev/VG/root', ':', 'vfs-uuid', '/dev/sda1', ':',
  'echo', '==files', ':',
  'mount-ro', '/dev/VG/root', '/', ':', 'mount-ro', '/dev/sda1', '/boot', ':', 'checksums-out', 'sha256', '/', '-',
];

type Inspection = Record<'fsck' | 'lvm' | 'ids' | 'files' | 'pv', string[]>;

/** Asked of OUT only: the PV's size in its metadata against its partition, and its extents against those in use. */
const PV_SIZES = ['echo', '==pv', ':', 'debug', 'sh', 'lvm pvs --noheadings --units b --nosuffix -o pv_size,dev_size,pv_pe_count,pv_pe_alloc_count', ':'];

function parseInspection(text: string): Inspection {
  const sections: Record<string, string[]> = {};
  let current: string[] | undefined;
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const head = /^==(\w+)$/.exec(line);
    if (head) sections[head[1]!] = current = [];
    else current?.push(line.replace(/\s+/g, ' '));
  }
  const files = (sections.files ?? []).sort();
  return { fsck: sections.fsck ?? [], lvm: sections.lvm ?? [], ids: sections.ids ?? [], files, pv: sections.pv ?? [] };
}

/** Runs guestfish with stdin closed (the appliance's qemu would read it); rejects with its stderr. */
function guestfish(cwd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('guestfish', [...args], { cwd, env: GUESTFS_ENV, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`guestfish ${args.slice(0, 4).join(' ')}…: ${stderr || error.message}`));
      else resolve(stdout);
    });
    child.stdin?.end();
  });
}

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

/** Builds the disk once (cached by recipe) and inspects it in the same appliance session. */
async function lvmDisk(): Promise<{ image: string; before: Inspection }> {
  const key = createHash('sha256').update(JSON.stringify([RECIPE, INSPECT])).digest('hex').slice(0, 12);
  const image = join(fixtureDir(), `shrink-lvm-${key}.img`);
  const truth = `${image}.inspect.txt`;
  if (!(await exists(truth))) {
    await mkdir(fixtureDir(), { recursive: true });
    const dir = await mkdtemp('/tmp/sparsify-shrinklvm-');
    try {
      const text = await guestfish(dir, [...RECIPE, ...INSPECT]);
      await new Promise<void>((resolve, reject) => execFile('cp', ['--sparse=always', join(dir, 'disk.img'), `${image}.partial`], (e) => (e ? reject(e) : resolve())));
      await rename(`${image}.partial`, image);
      await writeFile(truth, text); // written last: its presence means the image is complete
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return { image, before: parseInspection(await readFile(truth, 'utf8')) };
}

function sgdiskVerify(file: string): Promise<string> {
  return new Promise((resolve) => execFile('sgdisk', ['-v', file], (_e, stdout) => resolve(stdout)));
}

describeIntegration('sparsify --shrink on an ext4-on-LVM disk', { tools: ['guestfish', 'qemu-img', 'sgdisk'], root: true }, () => {
  let dir: string;
  let image: string;
  let before: Inspection;
  let inputSha: string;
  let out: string;
  let report: ShrinkReport;
  let after: Inspection;

  beforeAll(async () => {
    ({ image, before } = await lvmDisk());
    dir = await mkdtemp('/var/tmp/sp-shrink-lvm-');
    inputSha = await sha256File(image);
    out = join(dir, 'out.raw');
    const json = join(dir, 'report.json');
    const r = await runShrinkCli(['--shrink', '--format', 'raw', '--json', json, image, out]);
    if (r.exitCode !== 0) throw new Error(`sparsify --shrink exited ${r.exitCode}: ${r.stderr}`);
    report = (JSON.parse(await readFile(json, 'utf8')) as { shrink: ShrinkReport }).shrink;
    console.log(`shrink lvm: ${report.virtualSizeBeforeBytes} -> ${report.virtualSizeAfterBytes}`, JSON.stringify(report.volumes));
    after = parseInspection(await guestfish(dir, ['--ro', '--format=raw', '-a', out, 'run', ':', ...PV_SIZES, ...INSPECT]));
  }, 2 * SHRINK_RUN_MS);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const row = (name: string): ShrinkVolumeReport => report.volumes.find((v) => v.name === name) ?? expect.fail(`no report line for ${name}`);

  it('the report: /boot and the PV resized, the root LV resized to its minimum plus the margin, the swap LV kept and why', () => {
    expect(report.volumes.map((v) => [v.name, v.action])).toEqual([
      ['/dev/sda1', 'resized'],
      ['/dev/sda2', 'resized'],
      ['/dev/VG/swap', 'kept'],
      ['/dev/VG/root', 'resized'],
    ]);
    const [pv, swap, root] = [row('/dev/sda2'), row('/dev/VG/swap'), row('/dev/VG/root')];
    expect(swap.reason).toMatch(/not the last LV/);
    expect(swap.newSizeBytes).toBe(SWAP_MIB * MiB);
    // LVM rounds the LV up to whole 4 MiB extents (vgcreate's default).
    expect(root.newSizeBytes).toBe(Math.ceil((root.minimumBytes! + root.marginBytes!) / (4 * MiB)) * 4 * MiB);
    expect(root.newSizeBytes).toBeLessThan(root.oldSizeBytes / 4);
    // The LVs keep their place inside the PV, which moved down with its partition.
    for (const lv of [swap, root]) expect(lv.newOffsetBytes - pv.newOffsetBytes).toBe(lv.oldOffsetBytes - pv.oldOffsetBytes);
    expect(pv.newOffsetBytes).toBeLessThan(pv.oldOffsetBytes);
    expect(pv.newSizeBytes).toBe(root.newOffsetBytes + root.newSizeBytes - pv.newOffsetBytes);
    // The run itself compared the files of /boot and of the root LV before the resize and after the moves; the PV and the kept LV have none of their own.
    expect([row('/dev/sda1').filesChecked, root.filesChecked, pv.filesChecked, swap.filesChecked].map((n) => (n === undefined ? n : n > 0))).toEqual([true, true, undefined, undefined]);
  });

  it('the virtual size shrank to about the data plus margins', async () => {
    const [boot, pv] = [row('/dev/sda1'), row('/dev/sda2')];
    expect(report.virtualSizeBeforeBytes).toBe(1024 * MiB);
    // /boot from 1 MiB, the PV on the next MiB boundary, then the GPT backup (33 sectors) in the last MiB.
    expect(report.virtualSizeAfterBytes).toBeLessThanOrEqual(MiB + boot.newSizeBytes + MiB + pv.newSizeBytes + MiB);
    expect(report.virtualSizeAfterBytes).toBeLessThan(200 * MiB);
    expect((await stat(out)).size).toBe(report.virtualSizeAfterBytes);
  });

  it('both filesystems check clean, every file is identical, VG and LV names and UUIDs and the swap UUID and label are kept', () => {
    expect(before.fsck).toEqual(['root=0', 'boot=0']);
    expect(after.fsck).toEqual(['root=0', 'boot=0']);
    expect(after.lvm).toEqual(before.lvm);
    expect(after.lvm.some((l) => l.startsWith('VG '))).toBe(true);
    expect(after.ids).toEqual(before.ids);
    expect(after.ids).toContain('lvswap');
    expect(before.files.length).toBeGreaterThan(10);
    expect(after.files).toEqual(before.files);
  });

  it('the PV fills its shrunk partition exactly (pvresize): the partition holds its extents and its 1 MiB header, every extent in use', () => {
    // Only the figures: a warning line (a PV longer than its device) fails the test too.
    expect(after.pv).toHaveLength(1);
    const [pvSize, devSize, peCount, peAlloc] = after.pv[0]!.split(' ').map(Number);
    // pv_size counts the extents (pe_count × 4 MiB); dev_size is what LVM reads of the partition.
    expect(devSize).toBe(row('/dev/sda2').newSizeBytes);
    expect(pvSize).toBe(peCount! * 4 * MiB);
    expect(devSize! - pvSize!).toBeLessThanOrEqual(MiB);
    expect(peCount).toBe(peAlloc);
    expect(peCount).toBeGreaterThan(0);
  });

  it("sgdisk -v is clean and the input's sha256 is unchanged", async () => {
    expect(await sgdiskVerify(out)).toMatch(/No problems found/);
    expect(await sha256File(image)).toBe(inputSha);
  });
});
