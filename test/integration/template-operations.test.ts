/**
 * The templating operations on the Debian guest scripts/make-guest builds, through one
 * appliance over a qcow2 overlay of it (the guest's image itself is never written): a dry run
 * reports the host keys, machine-id, histories, logs and tmp files and changes nothing; the real
 * run, in the same appliance after it, removes or empties them and leaves /etc/passwd and the rest
 * alone. One launch and inspection serve both cases (each costs about a minute under TCG): the dry
 * run mounts read-only and its case checks that nothing was written before the real run starts.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
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
import { applyOperations, type ApplyReport } from '../../src/template/operations/apply.js';
import { selectOperations } from '../../src/template/operations/select.js';
import { AsyncStack } from '../../src/util/async-stack.js';
import { buildGuest, type BuiltGuest } from '../helpers/guest.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
const RUN_MS = 15 * 60_000;

const changed = (report: ApplyReport, name: string): string[] => report.operations.find((o) => o.name === name)?.changes.map((c) => c.path) ?? [];

describeIntegration(
  'templating operations on a real Debian guest',
  { tools: ['guestfish', 'qemu-storage-daemon', 'qemu-img', 'debootstrap', 'extlinux'], root: true },
  () => {
    const ctx = makeContext();
    let guest: BuiltGuest;
    let sha: string;
    let dir: string;

    beforeAll(async () => {
      guest = await buildGuest();
      sha = await sha256File(guest.imagePath);
      dir = await mkdtemp(join(tmpdir(), 'sparsify-it-template-'));
    }, 45 * 60_000);
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    /** The appliance over an overlay of the guest and the guest's inspection, shared by the cases in order. */
    let session: { g: Appliance; os: InspectedOs } | undefined;
    const stack = new AsyncStack(() => undefined);
    beforeAll(async () => {
      const overlay = join(dir, 'overlay.qcow2');
      await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', guest.imagePath, '-F', 'raw', overlay]);
      const work = join(dir, 'work');
      await mkdir(work);
      const found = await findAppliance(ctx);
      if (!found.available) throw new Error(found.reason);
      const served = stack.use(await serveImage(ctx, { file: overlay, format: 'qcow2', readOnly: false, discard: true, dir: work }));
      const g = stack.use(
        await launchAppliance(ctx, {
          host: found.host,
          drives: [{ socketPath: served.socketPath, exportName: served.exportName, readOnly: false, discard: true }],
          workDir: work,
        }),
      );
      const [os] = await inspectOperatingSystems(g, await listFilesystems(g));
      if (!os) throw new Error('no operating system found in the guest');
      session = { g, os };
    }, RUN_MS);
    afterAll(() => stack[Symbol.asyncDispose]());

    /** Runs `body` with the shared appliance and the guest's inspection. */
    async function withGuest<T>(body: (g: Appliance, os: InspectedOs) => Promise<T>): Promise<T> {
      if (!session) throw new Error('the appliance did not launch');
      // A case that failed half-way may have left a mount behind: the operations expect none.
      await session.g.run('umount-all');
      return body(session.g, session.os);
    }

    it(
      'a dry run lists host keys, machine-id, histories, logs and tmp files, and writes nothing',
      async () => {
        const { report, after } = await withGuest(async (g, os) => {
          const report = await applyOperations(g, os, selectOperations([]), { dryRun: true });
          await g.run('mount-ro', os.root, '/');
          const after = { key: await g.run('is-file', '/etc/ssh/ssh_host_ed25519_key'), id: await g.run('filesize', '/etc/machine-id') };
          await g.run('umount-all');
          return { report, after };
        });
        expect(report.warnings).toEqual([]);
        expect(changed(report, 'ssh-hostkeys')).toContain('/etc/ssh/ssh_host_ed25519_key');
        expect(report.operations.find((o) => o.name === 'machine-id')?.changes).toContainEqual(expect.objectContaining({ path: '/etc/machine-id', change: 'emptied' }));
        expect(changed(report, 'bash-history').sort()).toEqual(['/home/user/.bash_history', '/root/.bash_history']);
        expect(changed(report, 'logfiles')).toEqual(expect.arrayContaining(['/var/log/syslog', '/var/log/dpkg.log']));
        expect(changed(report, 'tmp-files')).toEqual(expect.arrayContaining(['/tmp/scratch-file', '/var/tmp/scratch-file']));
        expect(report.operations.find((o) => o.name === 'net-hwaddr')?.skipped).toMatch(/not for this guest/);
        expect(after).toEqual({ key: 'true\n', id: '33\n' });
      },
      RUN_MS,
    );

    it(
      'the real run removes and empties what the dry run listed, and nothing else',
      async () => {
        const seen = await withGuest(async (g, os) => {
          const report = await applyOperations(g, os, selectOperations([]), { dryRun: false });
          await g.run('mount-ro', os.root, '/');
          const ask = async (cmd: string, path: string) => (await g.run(cmd, path)).trim();
          const seen = {
            report,
            hostKeys: (await g.run('glob-expand', '/etc/ssh/*_host_*')).trim(),
            machineId: await ask('filesize', '/etc/machine-id'),
            rootHistory: await ask('exists', '/root/.bash_history'),
            syslog: await ask('exists', '/var/log/syslog'),
            tmp: (await g.run('ls', '/tmp')).trim(),
            varLog: await ask('is-dir', '/var/log'),
            passwd: await ask('is-file', '/etc/passwd'),
            sshdConfig: await ask('is-file', '/etc/ssh/sshd_config'),
          };
          await g.run('umount-all');
          return seen;
        });
        expect(seen).toMatchObject({ hostKeys: '', machineId: '0', rootHistory: 'false', syslog: 'false', tmp: '', varLog: 'true', passwd: 'true', sshdConfig: 'true' });
        const removed = seen.report.operations.flatMap((o) => o.changes).filter((c) => c.change === 'removed');
        expect(removed.every((c) => typeof c.bytes === 'number')).toBe(true);
        expect(await sha256File(guest.imagePath)).toBe(sha);
      },
      RUN_MS,
    );
  },
);
