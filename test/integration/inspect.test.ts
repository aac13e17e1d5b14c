/**
 * `sparsify --inspect` on the bootable Debian guest scripts/make-guest builds, held against
 * virt-inspector on the same disk: the same XML (applications and icon aside, which sparsify does
 * not read), valid against virt-inspector's own RELAX NG schema; the JSON and the table name the
 * guest; the disk is not changed and nothing is left behind. One appliance launch per sparsify
 * run (15-60 s under TCG), one for virt-inspector; one run gives the JSON (--json FILE) and the table.
 */
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseStringPromise } from 'xml2js';
import { leftoversUnder, makeRunTmp, spawnCli, waitForExit } from '../helpers/cli.js';
import { buildGuest, type BuiltGuest } from '../helpers/guest.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const RUN_MS = 10 * 60_000;
const LIBGUESTFS_ENV = { LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };
const RNG = '/usr/share/doc/guestfs-tools/virt-inspector.rng.gz';

/** One sparsify run with a private TMPDIR, stdin closed (the appliance's qemu must not read it). */
async function sparsify(args: string[], tmp: string) {
  return waitForExit(spawnCli(args, { TMPDIR: tmp }));
}

/** virt-inspector's document, with what sparsify does not read taken out. */
function comparable(doc: { operatingsystems: { operatingsystem: Record<string, unknown>[] } }) {
  return doc.operatingsystems.operatingsystem.map(({ applications, icon, drive_mappings, ...rest }) => rest);
}

describeIntegration(
  '--inspect on a real Debian guest, against virt-inspector',
  { tools: ['virt-inspector', 'guestfish', 'qemu-storage-daemon', 'qemu-img', 'xmllint', 'debootstrap', 'extlinux'], root: true },
  () => {
    let guest: BuiltGuest;
    let tmp: string;
    let sha: string;

    beforeAll(async () => {
      guest = await buildGuest();
      sha = await sha256File(guest.imagePath);
      tmp = await makeRunTmp();
    }, 45 * 60_000);
    afterAll(async () => {
      await rm(tmp, { recursive: true, force: true });
    });

    it(
      '--xml: what virt-inspector says, valid against its schema; the disk unchanged, nothing left',
      async () => {
        const r = await sparsify(['--inspect', '--xml', '--format', 'raw', guest.imagePath], tmp);
        expect(r.exitCode, r.stderr).toBe(0);
        const xmlFile = join(tmp, '..', `inspect-${process.pid}.xml`);
        await writeFile(xmlFile, r.stdout);
        try {
          const rng = join(tmp, '..', `inspector-${process.pid}.rng`);
          await execFileAsync('sh', ['-c', 'zcat "$1" > "$2"', 'sh', RNG, rng]);
          await execFileAsync('xmllint', ['--noout', '--relaxng', rng, xmlFile]).finally(() => rm(rng, { force: true }));
        } finally {
          await rm(xmlFile, { force: true });
        }
        const theirs = await execFileAsync('sh', ['-c', 'exec virt-inspector --no-applications --no-icon --format=raw -a "$1" </dev/null', 'sh', guest.imagePath], {
          env: { ...process.env, ...LIBGUESTFS_ENV },
          timeout: RUN_MS,
          maxBuffer: 16 << 20,
        });
        const [ours, reference] = [await parseStringPromise(r.stdout), await parseStringPromise(theirs.stdout)];
        expect(comparable(ours)).toEqual(comparable(reference));
        expect(ours.operatingsystems.operatingsystem[0]).toMatchObject({ name: ['linux'], distro: ['debian'], major_version: ['12'], hostname: [guest.hostname] });
        expect(await sha256File(guest.imagePath)).toBe(sha);
        expect(await leftoversUnder(tmp)).toEqual([]);
      },
      2 * RUN_MS,
    );

    it(
      '--json FILE and the table in one run: the root, the distribution, the hostname, the package manager, each filesystem with its type and UUID',
      async () => {
        // One launch serves both: --json FILE writes the JSON and still prints the table.
        const jsonFile = join(tmp, '..', `inspect-${process.pid}.json`);
        const table = await sparsify(['--inspect', '--json', jsonFile, '--format', 'raw', guest.imagePath], tmp);
        let text: string;
        try {
          expect(table.exitCode, table.stderr).toBe(0);
          text = await readFile(jsonFile, 'utf8');
        } finally {
          await rm(jsonFile, { force: true });
        }
        const result = JSON.parse(text);
        expect(result.operatingSystems).toHaveLength(1);
        const os = result.operatingSystems[0];
        expect(os).toMatchObject({ type: 'linux', distro: 'debian', majorVersion: 12, arch: 'x86_64', hostname: guest.hostname, packageFormat: 'deb', packageManagement: 'apt' });
        expect(os.mountpoints).toContainEqual({ mountpoint: '/', device: os.root });
        const types = result.filesystems.map((f: { type?: string }) => f.type);
        expect(types).toEqual(expect.arrayContaining(['ext4', 'swap']));
        for (const f of result.filesystems) expect(f.uuid, f.device).toMatch(/^[0-9a-f-]{8,}$/i);

        expect(table.stdout).toMatch(/^Distribution: +debian$/m);
        expect(table.stdout).toMatch(new RegExp(`^Hostname: +${guest.hostname}$`, 'm'));
        expect(table.stdout).toMatch(/^\/dev\/sda\d+ +swap +/m);
        expect(table.stderr).toMatch(/Launching the libguestfs appliance/);
        expect(await sha256File(guest.imagePath)).toBe(sha);
        expect(await leftoversUnder(tmp)).toEqual([]);
      },
      2 * RUN_MS,
    );
  },
);
