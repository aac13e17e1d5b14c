/**
 * The appliance engine as an ordinary user with the default engine, on the multi-filesystem image
 * (GPT: ext4, xfs, ntfs, vfat, swap, btrfs with a read-only snapshot): the maps take every volume
 * they can read and the appliance takes btrfs, so every volume is reclaimed without root; in
 * place, the file shrinks by all six volumes' garbage. Copy mode is held against virt-sparsify on
 * a smaller disk of the same two paths (ext4 from its map, btrfs in the appliance): virt-sparsify
 * zero-fills every filesystem under TCG, over three minutes on the 2 GiB image and under one on
 * the 320 MiB one. One appliance-using run per case (a launch takes 15-60 s under TCG).
 */
import { execFile } from 'node:child_process';
import { chown, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { leftoversUnder, makeRunTmp } from '../helpers/cli.js';
import { buildImage, copyImage, type BuiltImage } from '../helpers/image.js';
import { ensureTestUser, runCliAsUser } from '../helpers/ordinary-user.js';
import { readReport } from '../helpers/report.js';
import { describeIntegration } from '../helpers/require.js';
import { allocatedBytes, sha256File, verifyImage } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const GARBAGE_MIB = 96;
const RUN_MS = 15 * 60_000;
/** virt-sparsify zero-fills every filesystem under TCG: a minute on the small image, more on a loaded 2-core host. */
const PEER_MS = RUN_MS;
/** libguestfs as the README and the machine's notes say to run it here; stdin must not be a terminal. */
const LIBGUESTFS_ENV = { LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };

describeIntegration(
  'the appliance engine as an ordinary user (default engine)',
  { tools: ['runuser', 'useradd', 'qemu-img', 'qemu-storage-daemon', 'guestfish', 'virt-sparsify', 'btrfs'], root: true },
  () => {
    let image: BuiltImage;
    /** The disk both tools sparsify for the comparison: one volume per engine path. */
    let small: BuiltImage;
    let dir: string;
    let owner: { uid: number; gid: number };

    beforeAll(async () => {
      image = await buildImage({ layout: 'gpt', fs: ['ext4', 'xfs', 'ntfs', 'vfat', 'swap', 'btrfs'], size: '2G', fillMiB: 24, garbageMiB: GARBAGE_MIB, seed: 3 });
      small = await buildImage({ layout: 'gpt', fs: ['ext4', 'btrfs'], size: '320M', fillMiB: 8, garbageMiB: 32, seed: 3 });
      owner = ensureTestUser();
      dir = await makeRunTmp();
      await chown(dir, owner.uid, owner.gid);
    }, 600_000);
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    /** A copy of the fixture (or a directory) the user owns. */
    async function owned(name: string, kind: 'image' | 'dir', from = image): Promise<string> {
      const path = join(dir, name);
      if (kind === 'image') await copyImage(from.imagePath, path);
      else await mkdir(path);
      await chown(path, owner.uid, owner.gid);
      return path;
    }

    it(
      'copy mode: every volume reclaimed, btrfs in the appliance; files identical, fsck clean, snapshot read-only',
      async () => {
        const input = await owned('in.raw', 'image');
        const sha = await sha256File(input);
        const tmp = await owned('tmp-copy', 'dir');
        const out = join(dir, 'out.qcow2');
        const json = join(dir, 'copy.json');
        const r = await runCliAsUser(['--machine-readable', '--format', 'raw', '--convert', 'qcow2', '--json', json, input, out], { TMPDIR: tmp }, RUN_MS);
        expect(r.exitCode, r.stderr).toBe(0);
        const rows = (await readReport(json)).volumes;
        expect(rows.map((v) => `${v.type}:${v.action}:${v.handled}`)).toEqual([
          'ext4:map:free blocks skipped',
          'xfs:map:free blocks skipped',
          'ntfs:map:free blocks skipped',
          'vfat:map:free blocks skipped',
          'swap:map:free blocks skipped',
          'btrfs:appliance:trimmed',
        ]);
        expect(rows.at(-1)!.reason).toBe('btrfs (no map reader): free space trimmed in the appliance');
        for (const row of rows) expect(row.reclaimedBytes, row.name).toBeGreaterThan(0.9 * GARBAGE_MIB * MiB);
        expect(r.stdout).toMatch(/^Launch the libguestfs appliance$/m);
        // Launched as soon as the btrfs was probed, while the disk was still examined: before the overlay step, not after it.
        expect(r.stdout.indexOf('Launch the libguestfs appliance')).toBeLessThan(r.stdout.indexOf('Create overlay file to protect source disk'));
        expect(r.stdout).toMatch(/^Wait for the libguestfs appliance$/m);
        expect(await sha256File(input)).toBe(sha);
        expect(await leftoversUnder(tmp)).toEqual([]);
        expect((await verifyImage(out, 'qcow2', image.manifestPath)).problems).toEqual([]);
      },
      RUN_MS,
    );

    it(
      'copy mode on a smaller disk (GPT: ext4 from its map, btrfs in the appliance): within 2 % of virt-sparsify on the same input',
      async () => {
        const input = await owned('small.raw', 'image', small);
        const tmp = await owned('tmp-small', 'dir');
        const out = join(dir, 'small-out.qcow2');
        const json = join(dir, 'small.json');
        const r = await runCliAsUser(['--machine-readable', '--format', 'raw', '--convert', 'qcow2', '--json', json, input, out], { TMPDIR: tmp }, RUN_MS);
        expect(r.exitCode, r.stderr).toBe(0);
        expect((await readReport(json)).volumes.map((v) => `${v.type}:${v.action}`)).toEqual(['ext4:map', 'btrfs:appliance']);
        expect((await verifyImage(out, 'qcow2', small.manifestPath)).problems).toEqual([]);

        const peerOut = join(dir, 'virt-sparsify.qcow2');
        await execFileAsync('sh', ['-c', 'exec virt-sparsify -q --format raw --convert qcow2 "$1" "$2" </dev/null', 'sh', input, peerOut], {
          // The overlay in dir; libguestfs' appliance cache where it always is (it would follow TMPDIR).
          env: { ...process.env, ...LIBGUESTFS_ENV, LIBGUESTFS_CACHEDIR: '/var/tmp', TMPDIR: dir },
          timeout: PEER_MS,
        }).catch((err: { killed?: boolean; message: string }) => {
          throw new Error(err.killed ? `virt-sparsify (the peer) still running after ${PEER_MS / 60_000} min: killed` : err.message);
        });
        const [ours, theirs] = [await allocatedBytes(out), await allocatedBytes(peerOut)];
        console.log(`copy mode, qcow2 allocated: sparsify ${ours} B, virt-sparsify ${theirs} B (${((ours / theirs - 1) * 100).toFixed(2)} %)`);
        expect(ours).toBeLessThanOrEqual(theirs * 1.02);
      },
      RUN_MS + PEER_MS,
    );

    it(
      'in place: the file shrinks by the garbage of all six volumes, btrfs trimmed in the appliance; files identical, fsck clean',
      async () => {
        const disk = await owned('inplace.raw', 'image');
        const before = await allocatedBytes(disk);
        const tmp = await owned('tmp-inplace', 'dir');
        const json = join(dir, 'inplace.json');
        const r = await runCliAsUser(['--in-place', '--format', 'raw', '--json', json, disk], { TMPDIR: tmp }, RUN_MS);
        expect(r.exitCode, r.stderr).toBe(0);
        const rows = (await readReport(json)).volumes;
        expect(rows.map((v) => `${v.type}:${v.action}`)).toEqual(['ext4:map', 'xfs:map', 'ntfs:map', 'vfat:map', 'swap:map', 'btrfs:appliance']);
        expect(rows.at(-1)!.handled).toBe('trimmed');
        expect(before - (await allocatedBytes(disk))).toBeGreaterThan(0.9 * 6 * GARBAGE_MIB * MiB);
        expect(await leftoversUnder(tmp)).toEqual([]);
        expect((await verifyImage(disk, 'raw', image.manifestPath)).problems).toEqual([]);
      },
      RUN_MS,
    );
  },
);
