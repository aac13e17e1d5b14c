/**
 * A shrunk, sealed, compressed template of the Debian guest of scripts/make-guest (4 GiB GPT:
 * ext4 root, then swap at the end; openssh-server, systemd, nothing that would make missing host
 * keys at boot), made by one run of `sparsify --shrink --template --convert qcow2 --compress IN
 * OUT` and booted once under qemu (TCG), for issue 12 (--shrink composes with the other options)
 * and issue 11 (a template's first boot) both. OUT is checked first from a raw copy (the boot
 * writes OUT): a compressed qcow2 of the shrunk size within issue 12's bound that qemu-img check,
 * sgdisk -v and e2fsck find clean, IN's files but those the template changed. Booted, it reaches
 * its login prompt; the kernel sees the shrunk disk, mounts its root and turns its swap on with
 * no GPT complaint; sshd serves new host keys (made by sparsify's first-boot unit); once powered
 * off, it has a new machine-id and the unit is gone. IN is never written. A second suite checks
 * the decision itself on the same guest: a dry run writes nothing, a guest that regenerates its
 * keys gets no unit, a guest without systemd gets a warning.
 */
import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { launchAppliance, type Appliance } from '../../src/engines/appliance/guestfish.js';
import { findAppliance } from '../../src/engines/appliance/host.js';
import { inspectOperatingSystems, listFilesystems } from '../../src/inspect/guest.js';
import type { InspectedOs } from '../../src/inspect/types.js';
import { serveImage } from '../../src/qemu/storage-daemon.js';
import { UNIT_PATH, WANTS_DIR, WANTS_LINK } from '../../src/template/firstboot/unit.js';
import { applyOperations, type ApplyReport } from '../../src/template/operations/apply.js';
import { selectOperations } from '../../src/template/operations/select.js';
import { AsyncStack } from '../../src/util/async-stack.js';
import type { RunReport } from '../../src/report/types.js';
import { bootImage } from '../helpers/boot.js';
import { spawnCli, waitForExit } from '../helpers/cli.js';
import { buildGuest, withGuestRoot, type BuiltGuest } from '../helpers/guest.js';
import { describeIntegration } from '../helpers/require.js';
import { partitions, readConsoleFacts, resize2fsMinimumBytes, sh, shrinkBoundBytes, unexplainedDifferences, withLoop, withMount } from '../helpers/shrunk-guest.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const RUN_MS = 30 * 60_000;
const HOST_KEY = '/etc/ssh/ssh_host_ed25519_key.pub';

const ctx = makeContext();
let guest: BuiltGuest;
let dir: string;
let inSha: string | undefined;

/** In a suite: the guest built (or cached), its sha256, a temp dir; after, the dir removed. */
function useGuest(): void {
  beforeAll(async () => {
    guest = await buildGuest();
    inSha = await sha256File(guest.imagePath);
    dir = await mkdtemp(join(tmpdir(), 'sparsify-it-boot-'));
  }, 45 * 60_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
}

/** The suite's last test: IN was never written. */
function itLeavesInputUnchanged(): void {
  it("IN's sha256 is unchanged", async () => {
    expect(inSha).toBeDefined();
    expect(await sha256File(guest.imagePath)).toBe(inSha);
  });
}

/** Runs `body` with an appliance over `image` and the guest's inspection; `readOnly` serves it read-only. */
async function withAppliance<T>(image: { path: string; format: 'raw' | 'qcow2' }, readOnly: boolean, body: (g: Appliance, os: InspectedOs) => Promise<T>): Promise<T> {
  const work = await mkdtemp(join(dir, 'work-'));
  await using stack = new AsyncStack(() => undefined);
  stack.defer(() => rm(work, { recursive: true, force: true }));
  const found = await findAppliance(ctx);
  if (!found.available) throw new Error(found.reason);
  const served = stack.use(await serveImage(ctx, { file: image.path, format: image.format, readOnly, discard: !readOnly, dir: work }));
  const g = stack.use(
    await launchAppliance(ctx, {
      host: found.host,
      drives: [{ socketPath: served.socketPath, exportName: served.exportName, readOnly, discard: !readOnly }],
      workDir: work,
    }),
  );
  const [os] = await inspectOperatingSystems(g, await listFilesystems(g));
  if (!os) throw new Error('no operating system found in the guest');
  return await body(g, os);
}

/**
 * What a check reads from a guest's root: the ed25519 host key, the machine-id, the first-boot unit
 * and its symlink. Read from a read-only loop mount of a raw copy (the guest is powered off and its
 * filesystem clean): an appliance launch and inspection cost two minutes under TCG for four files.
 * Nothing is followed out of the guest's tree: a path whose last component is not a regular file
 * counts as missing, and only names are listed.
 */
async function readIdentity(image: { path: string; format: 'raw' | 'qcow2' }) {
  let raw = image.path;
  if (image.format === 'qcow2') {
    raw = join(dir, 'identity.raw');
    await execFileAsync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image.path, raw]);
  }
  try {
    return await withGuestRoot(raw, async (root) => {
      const isFile = async (path: string) => (await lstat(join(root, path)).catch(() => undefined))?.isFile() ?? false;
      const exists = async (path: string) => (await lstat(join(root, path)).catch(() => undefined)) !== undefined;
      return {
        hostKey: (await isFile(HOST_KEY)) ? (await readFile(join(root, HOST_KEY), 'utf8')).trim().split(' ').slice(0, 2).join(' ') : undefined,
        machineId: (await isFile('/etc/machine-id')) ? (await readFile(join(root, 'etc/machine-id'), 'utf8')).trim() : undefined,
        unit: await exists(UNIT_PATH),
        // The link itself, dangling or not.
        link: (await readdir(join(root, WANTS_DIR))).includes(WANTS_LINK.split('/').pop()!),
      };
    });
  } finally {
    if (raw !== image.path) await rm(raw, { force: true });
  }
}

interface QemuCheck {
  readonly 'check-errors': number;
  readonly corruptions?: number;
  readonly leaks?: number;
  readonly 'compressed-clusters'?: number;
  readonly 'allocated-clusters'?: number;
}

describeIntegration(
  'sparsify --shrink --template --convert qcow2 --compress IN OUT on the Debian guest, booted once',
  { tools: ['guestfish', 'qemu-img', 'qemu-storage-daemon', 'qemu-system-x86_64', 'ssh-keyscan', 'sgdisk', 'sfdisk', 'resize2fs', 'e2fsck', 'losetup', 'blkid', 'debootstrap', 'extlinux'], root: true },
  () => {
    useGuest();
    let out: string;
    let outRaw: string;
    let report: RunReport;
    let before: Awaited<ReturnType<typeof readIdentity>>;
    let served: string | undefined;

    beforeAll(async () => {
      // IN's own key and machine-id, read from a read-only loop mount: no appliance launch for a look at the input.
      before = await readIdentity({ path: guest.imagePath, format: 'raw' });
      out = join(dir, 'out.qcow2');
      const json = join(dir, 'report.json');
      const t = Date.now();
      // spawnCli, not a runner with a kill timeout: a seal and a shrink under TCG at load take minutes.
      const r = await waitForExit(spawnCli(['--shrink', '--template', '--convert', 'qcow2', '--compress', '--format', 'raw', '--json', json, guest.imagePath, out], { LIBGUESTFS_BACKEND: 'direct' }));
      console.log(`shrink --template --convert qcow2 --compress: ${((Date.now() - t) / 1000).toFixed(0)} s`);
      if (r.exitCode !== 0) throw new Error(`sparsify exited ${r.exitCode}: ${r.stderr}`);
      report = JSON.parse(await readFile(json, 'utf8')) as RunReport;
      outRaw = join(dir, 'out.raw');
      await execFileAsync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', out, outRaw]);
    }, RUN_MS);

    it("OUT is a compressed qcow2 of the shrunk size, within resize2fs -P + 5% + the swap + 64 MiB, that qemu-img check finds clean; the report has each volume", async () => {
      const shrink = report.shrink!;
      const inParts = await partitions(guest.imagePath);
      const boundBytes = shrinkBoundBytes(await resize2fsMinimumBytes(guest.imagePath, inParts[0]!), inParts[1]!.size * 512);
      console.log(`shrink --template: ${shrink.virtualSizeBeforeBytes} -> ${shrink.virtualSizeAfterBytes} bytes (bound ${boundBytes})`);
      expect(shrink.virtualSizeAfterBytes).toBeLessThanOrEqual(boundBytes);
      expect(shrink.volumes.map((v) => [v.name, v.action])).toEqual([
        ['/dev/sda1', 'resized'],
        ['/dev/sda2', 'remade'],
      ]);
      const info = JSON.parse(await sh('qemu-img', ['info', '--output=json', out])) as { format: string; 'virtual-size': number };
      expect({ format: info.format, size: info['virtual-size'] }).toEqual({ format: 'qcow2', size: shrink.virtualSizeAfterBytes });
      const check = JSON.parse(await sh('qemu-img', ['check', '--output=json', out])) as QemuCheck;
      expect({ errors: check['check-errors'], corruptions: check.corruptions ?? 0, leaks: check.leaks ?? 0 }).toEqual({ errors: 0, corruptions: 0, leaks: 0 });
      // --compress: the data clusters are compressed ones (a few, e.g. metadata-only ones, may not shrink and stay plain).
      expect(check['compressed-clusters']).toBeGreaterThan(0.9 * (check['allocated-clusters'] ?? 0));
    });

    it('ssh-hostkeys adds the first-boot unit and its symlink, with no warning', () => {
      const hostkeys = report.template!.operations.find((o) => o.name === 'ssh-hostkeys');
      expect(hostkeys?.changes).toEqual(
        expect.arrayContaining([expect.objectContaining({ path: UNIT_PATH, change: 'added' }), expect.objectContaining({ path: WANTS_LINK, change: 'added' })]),
      );
      expect(hostkeys?.warnings).toEqual([]);
    });

    it('sgdisk -v and e2fsck -fn are clean; every file is identical but those the template changed, and its changes are there', async () => {
      expect(await sh('sgdisk', ['-v', outRaw])).toMatch(/No problems found/);
      const changes = report.template!.operations.flatMap((o) => o.changes);
      expect(changes.filter((c) => c.change === 'removed').length).toBeGreaterThan(0);
      const inRoot = (await partitions(guest.imagePath))[0]!;
      const outRoot = (await partitions(outRaw))[0]!;
      await withLoop(outRaw, outRoot.start * 512, outRoot.size * 512, async (dev) => {
        await expect(execFileAsync('e2fsck', ['-fn', dev])).resolves.toBeTruthy();
        await withLoop(guest.imagePath, inRoot.start * 512, inRoot.size * 512, (inDev) =>
          withMount(inDev, join(dir, 'mnt-in'), (a) =>
            withMount(dev, join(dir, 'mnt-out'), async (b) => {
              expect(await unexplainedDifferences(a, b, changes.map((c) => c.path))).toEqual([]);
              // The template's work, seen in OUT: IN's machine-id gone, the first-boot unit that makes new host keys added.
              expect(await readFile(join(b, 'etc/machine-id'), 'utf8').catch(() => '')).not.toBe(await readFile(join(a, 'etc/machine-id'), 'utf8'));
              expect((await lstat(join(b, UNIT_PATH))).isFile()).toBe(true);
            }),
          ),
        );
      });
      await rm(outRaw, { force: true });
    });

    it(
      'OUT boots under TCG to its login prompt; the guest sees the shrunk disk, mounts its root, turns its swap on, no GPT complaint; sshd serves a new host key; it powers off on the ACPI button',
      async () => {
        expect(before.hostKey).toMatch(/^ssh-ed25519 /);
        expect(before.machineId).toMatch(/^[0-9a-f]{32}$/);
        await using vm = await bootImage(out, { format: 'qcow2', loginTimeoutMs: 15 * 60_000 });
        console.log(`template-boot: login prompt after ${(vm.bootMs / 1000).toFixed(0)} s under TCG`);
        const keys = await vm.sshHostKeys(undefined, ['ed25519']);
        // swapon may run after getty shows the prompt: give it a minute.
        const deadline = Date.now() + 60_000;
        while (!readConsoleFacts(await vm.console()).swapOn && Date.now() < deadline) await delay(2000);
        expect(readConsoleFacts(await vm.console())).toEqual({ diskBytes: report.shrink!.virtualSizeAfterBytes, rootMounted: true, rootRemounted: true, swapOn: true, gptWarnings: [] });
        const t = Date.now();
        expect(await vm.powerdown(5 * 60_000)).toBe(true);
        console.log(`template-boot: powered off ${((Date.now() - t) / 1000).toFixed(0)} s after the ACPI button`);
        served = keys.find((k) => k.startsWith('ssh-ed25519 '));
        expect(served).toBeDefined();
        expect(served).not.toBe(before.hostKey);
      },
      RUN_MS,
    );

    it('after power-off: the key sshd served is the one on disk, a new machine-id, the first-boot unit and its symlink gone', async () => {
      if (served === undefined) expect.fail('the guest did not boot and serve a key');
      const after = await readIdentity({ path: out, format: 'qcow2' });
      expect(after.hostKey).toBe(served);
      expect(after.machineId).toMatch(/^[0-9a-f]{32}$/);
      expect(after.machineId).not.toBe(before.machineId);
      expect({ unit: after.unit, link: after.link }).toEqual({ unit: false, link: false });
    });

    itLeavesInputUnchanged();
  },
);

describeIntegration(
  'whether the ssh-hostkeys operation adds a first-boot unit, decided from the guest',
  { tools: ['guestfish', 'qemu-storage-daemon', 'qemu-img', 'debootstrap', 'extlinux'], root: true },
  () => {
    useGuest();
    it(
      'dry run: reports the unit and writes nothing; a regenerator in the guest: no unit; no systemd: a warning',
      async () => {
        const overlay = join(dir, 'decide.qcow2');
        await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', guest.imagePath, '-F', 'raw', overlay]);
        const hostkeys = (r: ApplyReport) => r.operations.find((o) => o.name === 'ssh-hostkeys')!;
        const ssh = selectOperations(['ssh-hostkeys']);
        await withAppliance({ path: overlay, format: 'qcow2' }, false, async (g, os) => {
          const look = async () => {
            await g.run('mount-ro', os.root, '/');
            const seen = { unit: (await g.run('exists', UNIT_PATH)).trim(), wants: (await g.run('exists', WANTS_LINK)).trim() };
            await g.run('umount-all');
            return seen;
          };
          const edit = async (...commands: string[][]) => {
            await g.run('mount', os.root, '/');
            for (const [cmd, ...args] of commands) await g.run(cmd!, ...args);
            await g.run('umount-all');
          };

          const dry = await applyOperations(g, os, ssh, { dryRun: true });
          expect(hostkeys(dry).changes.filter((c) => c.change === 'added').map((c) => c.path)).toEqual([UNIT_PATH, WANTS_LINK]);
          expect(await look()).toEqual({ unit: 'false', wants: 'false' });

          // A drop-in that makes the keys before sshd starts, as some images add.
          await edit(['mkdir-p', '/etc/systemd/system/ssh.service.d'], ['write', '/etc/systemd/system/ssh.service.d/keygen.conf', '[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n']);
          const regenerated = await applyOperations(g, os, ssh, { dryRun: false });
          expect(hostkeys(regenerated).changes.map((c) => c.change)).not.toContain('added');
          expect(hostkeys(regenerated).changes.map((c) => c.path)).toContain('/etc/ssh/ssh_host_ed25519_key');
          expect(hostkeys(regenerated).warnings).toEqual([]);
          expect(await look()).toEqual({ unit: 'false', wants: 'false' });

          // The drop-in gone and /sbin/init no longer systemd: sshd would boot without keys.
          await edit(['rm', '/etc/systemd/system/ssh.service.d/keygen.conf'], ['rm-f', '/usr/sbin/init'], ['rm-f', '/sbin/init']);
          const noSystemd = await applyOperations(g, os, ssh, { dryRun: false });
          expect(hostkeys(noSystemd).changes).toEqual([]);
          expect(hostkeys(noSystemd).warnings).toEqual([expect.stringMatching(/^the template will boot without SSH host keys: .*not systemd/)]);
          expect(await look()).toEqual({ unit: 'false', wants: 'false' });
        });
      },
      RUN_MS,
    );

    itLeavesInputUnchanged();
  },
);
