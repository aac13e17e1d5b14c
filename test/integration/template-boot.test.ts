/**
 * First boot of a template: the Debian guest of scripts/make-guest (openssh-server, systemd,
 * nothing that would make missing host keys at boot) is sealed with the default operations and
 * booted under qemu (TCG). It must reach its login prompt; its sshd must serve new host keys
 * (made by sparsify's first-boot unit); once powered off, it must have a new machine-id and the
 * unit must be gone. The guest's image (IN) is never written. A second suite checks the
 * decision itself on the same guest: a dry run writes nothing, a guest that regenerates its keys
 * gets no unit, a guest without systemd gets a warning.
 */
import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import type { RunReport, TemplateReport } from '../../src/report/types.js';
import { bootImage } from '../helpers/boot.js';
import { spawnCli, waitForExit } from '../helpers/cli.js';
import { buildGuest, withGuestRoot, type BuiltGuest } from '../helpers/guest.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const RUN_MS = 30 * 60_000;
const HOST_KEY = '/etc/ssh/ssh_host_ed25519_key.pub';

const ctx = makeContext();
let guest: BuiltGuest;
let dir: string;

/** In a suite: the guest built (or cached), a temp dir; after, the dir removed and IN checked unchanged. */
function useGuest(): void {
  let inSha: string | undefined;
  beforeAll(async () => {
    guest = await buildGuest();
    inSha = await sha256File(guest.imagePath);
    dir = await mkdtemp(join(tmpdir(), 'sparsify-it-boot-'));
  }, 45 * 60_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    if (inSha) expect(await sha256File(guest.imagePath)).toBe(inSha);
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

/**
 * The template: one run of `sparsify --template` (default operations) from IN to a qcow2 OUT;
 * resolves with what the operations did, from its --json report. IN is never written.
 */
async function makeTemplate(input: BuiltGuest, out: string): Promise<TemplateReport> {
  const json = join(dir, 'template-report.json');
  // spawnCli, not runCli: a seal under TCG takes minutes, over runCli's kill timeout.
  const r = await waitForExit(spawnCli(['--template', '--format', input.format, '--convert', 'qcow2', '--json', json, input.imagePath, out], { LIBGUESTFS_BACKEND: 'direct' }));
  expect(r.exitCode, r.stderr).toBe(0);
  const report = JSON.parse(await readFile(json, 'utf8')) as RunReport;
  if (!report.template) throw new Error('the --json report has no template section');
  return report.template;
}

describeIntegration(
  'a template boots and makes its own SSH host keys and machine-id',
  { tools: ['guestfish', 'qemu-storage-daemon', 'qemu-img', 'qemu-system-x86_64', 'ssh-keyscan', 'debootstrap', 'extlinux'], root: true },
  () => {
    useGuest();
    it(
      'boots under TCG to its login prompt; sshd serves a new host key; after power-off: new machine-id, no first-boot unit',
      async () => {
        // IN's own key and machine-id, read from a read-only loop mount: no appliance launch for a look at the input.
        const before = await withGuestRoot(guest.imagePath, async (root) => ({
          hostKey: (await readFile(join(root, HOST_KEY), 'utf8')).trim().split(' ').slice(0, 2).join(' '),
          machineId: (await readFile(join(root, 'etc/machine-id'), 'utf8')).trim(),
        }));
        expect(before.hostKey).toMatch(/^ssh-ed25519 /);
        expect(before.machineId).toMatch(/^[0-9a-f]{32}$/);

        const template = join(dir, 'template.qcow2');
        const report = await makeTemplate(guest, template);
        const hostkeys = report.operations.find((o) => o.name === 'ssh-hostkeys');
        expect(hostkeys?.changes).toEqual(
          expect.arrayContaining([expect.objectContaining({ path: UNIT_PATH, change: 'added' }), expect.objectContaining({ path: WANTS_LINK, change: 'added' })]),
        );
        expect(hostkeys?.warnings).toEqual([]);

        let keys: string[];
        {
          await using vm = await bootImage(template, { format: 'qcow2', loginTimeoutMs: 15 * 60_000 });
          console.log(`template-boot: login prompt after ${(vm.bootMs / 1000).toFixed(0)} s under TCG`);
          keys = await vm.sshHostKeys(undefined, ['ed25519']);
          const t = Date.now();
          expect(await vm.powerdown(5 * 60_000)).toBe(true);
          console.log(`template-boot: powered off ${((Date.now() - t) / 1000).toFixed(0)} s after the ACPI button`);
        }
        const ed25519 = keys.find((k) => k.startsWith('ssh-ed25519 '));
        expect(ed25519).toBeDefined();
        expect(ed25519).not.toBe(before.hostKey);

        const after = await readIdentity({ path: template, format: 'qcow2' });
        // The key sshd served is the one the first boot wrote.
        expect(after.hostKey).toBe(ed25519);
        expect(after.machineId).toMatch(/^[0-9a-f]{32}$/);
        expect(after.machineId).not.toBe(before.machineId);
        expect({ unit: after.unit, link: after.link }).toEqual({ unit: false, link: false });
      },
      RUN_MS,
    );
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
  },
);
