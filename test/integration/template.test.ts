/**
 * `sparsify --template` on the Debian 12 guest of scripts/make-guest (test/helpers/guest.ts), as a
 * user runs it: the guest sealed on the overlay in one pass (host keys, logs, histories, tmp
 * files and apt caches gone, machine-id empty), every other file of the root filesystem
 * byte-identical (both roots loop-mounted read-only and walked), the removed files' blocks
 * reclaimed (the output smaller than a plain sparsify of the same input by at least their size),
 * the input unchanged; `--dry-run` writes nothing and lists the files; `--list-operations`; a
 * bad `--operations` name; Ctrl-C during the operations leaves nothing behind.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunReport } from '../../src/report/types.js';
import { CLI, leftoversUnder, orphanLoops, waitForExit, type CliResult } from '../helpers/cli.js';
import { buildGuest, withGuestRoot, type BuiltGuest } from '../helpers/guest.js';
import { stillRunning, watchDescendants } from '../helpers/process-tree.js';
import { describeIntegration } from '../helpers/require.js';
import { sha256File } from '../helpers/verify.js';

const execFileAsync = promisify(execFile);
/** A TCG appliance launch takes about a minute on this 2-core host, more under load; the copy of the 3 GiB guest a minute more. */
const RUN_MS = 15 * 60_000;
const ENV = { LIBGUESTFS_BACKEND: 'direct', LIBGUESTFS_BACKEND_SETTINGS: 'force_tcg' };

/** Runs the built CLI with a timeout that fits an appliance launch; stdin is /dev/null (libguestfs' qemu would read it). */
function sparsify(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...ENV, ...env }, maxBuffer: 64 << 20, timeout: RUN_MS - 60_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      resolve({ exitCode: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

/** What a tree holds: per path, `file SHA`, `link TARGET` or `dir`/other type. */
async function readTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(root, rel), { withFileTypes: true })) {
      const path = `${rel}/${entry.name}`;
      const full = join(root, path);
      if (entry.isDirectory()) {
        out.set(path, 'dir');
        await walk(path);
      } else if (entry.isSymbolicLink()) out.set(path, `link ${await readlink(full)}`);
      else if (entry.isFile()) {
        const hash = createHash('sha256');
        for await (const chunk of createReadStream(full)) hash.update(chunk as Buffer);
        out.set(path, `file ${hash.digest('hex')}`);
      } else out.set(path, `mode ${(await lstat(full)).mode.toString(8)}`);
    }
  };
  await walk('');
  return out;
}

const allocatedBytes = async (path: string) => (await stat(path)).blocks * 512;

describeIntegration(
  'sparsify --template on a real Debian guest',
  { tools: ['guestfish', 'qemu-storage-daemon', 'qemu-img', 'debootstrap', 'extlinux', 'losetup'], root: true },
  () => {
    let guest: BuiltGuest;
    let inputSha: string;
    let dir: string;

    beforeAll(async () => {
      guest = await buildGuest();
      inputSha = await sha256File(guest.imagePath);
      dir = await mkdtemp(join(tmpdir(), 'sparsify-it-template-'));
    }, 45 * 60_000);
    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('--list-operations prints every operation, * for the defaults, and exits 0', async () => {
      const r = await sparsify(['--list-operations']);
      expect(r.exitCode, r.stderr).toBe(0);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines.length).toBeGreaterThanOrEqual(24);
      expect(lines.find((l) => l.startsWith('ssh-hostkeys '))).toMatch(/^ssh-hostkeys \* \S/);
      expect(lines.find((l) => l.startsWith('machine-id '))).toMatch(/^machine-id \* \S/);
      expect(lines.find((l) => l.startsWith('lvm-system-devices '))).toBeDefined();
    });

    it('a bad --operations name is a usage error: exit 1, one line, nothing read', async () => {
      const out = join(dir, 'bad-op.raw');
      const r = await sparsify(['--template', '--operations', 'defaults,no-such-op', '--format', 'raw', guest.imagePath, out]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.split('\n')[0]).toBe("sparsify: error: --operations: 'no-such-op' is not a known operation");
      expect(existsSync(out)).toBe(false);
      const without = await sparsify(['--operations', 'defaults', guest.imagePath, out]);
      expect(without.exitCode).toBe(1);
      expect(without.stderr).toMatch(/^sparsify: error: --operations goes with --template: add --template/);
    });

    it(
      'seals the guest in one pass: identity and traces gone, every other file identical, their blocks reclaimed, the input unchanged',
      async () => {
        const out = join(dir, 'template.raw');
        const plain = join(dir, 'plain.raw');
        const json = join(dir, 'template.json');
        const t0 = Date.now();
        const r = await sparsify(['--template', '--format', 'raw', '--json', json, guest.imagePath, out]);
        const templateMs = Date.now() - t0;
        expect(r.exitCode, r.stderr).toBe(0);
        const t1 = Date.now();
        const p = await sparsify(['-q', '--format', 'raw', guest.imagePath, plain]);
        const plainMs = Date.now() - t1;
        expect(p.exitCode, p.stderr).toBe(0);
        console.log(`--template: ${(templateMs / 1000).toFixed(1)} s; plain sparsify: ${(plainMs / 1000).toFixed(1)} s`);
        expect(await sha256File(guest.imagePath)).toBe(inputSha);

        const report = JSON.parse(await readFile(json, 'utf8')) as RunReport;
        const t = report.template!;
        expect(t.dryRun).toBe(false);
        expect(t.guest).toMatchObject({ type: 'linux', distro: 'debian', majorVersion: 12, hostname: guest.hostname, root: '/dev/sda1' });
        expect(report.phases.map((ph) => ph.name)).toEqual(expect.arrayContaining(['appliance launch', 'inspection', 'operations']));
        // The closing text names the guest and the files.
        expect(r.stdout).toMatch(/Guest: {2}debian 12\.\d+/);
        expect(r.stdout).toContain('removed /etc/ssh/ssh_host_ed25519_key');

        const changes = t.operations.flatMap((op) => op.changes);
        const removed = changes.filter((c) => c.change === 'removed').map((c) => c.path);
        const touched = new Set(changes.map((c) => c.path));
        const below = (path: string, roots: Iterable<string>) => [...roots].some((r) => path === r || path.startsWith(`${r}/`));
        expect(t.removedBytes).toBe(changes.filter((c) => c.change === 'removed' || c.change === 'emptied').reduce((s, c) => s + (c.bytes ?? 0), 0));

        expect(report.volumes.map((v) => v.name)).toContain('/dev/sda1');
        const before = await withGuestRoot(guest.imagePath, readTree);
        const after = await withGuestRoot(out, readTree);

        // What the user checks first.
        const hostKeys = [...before.keys()].filter((k) => /^\/etc\/ssh\/ssh_host_.*_key(\.pub)?$/.test(k));
        expect(hostKeys.length).toBeGreaterThan(0);
        for (const k of hostKeys) expect(after.has(k), k).toBe(false);
        expect(before.get('/etc/machine-id')).not.toBe(`file ${createHash('sha256').digest('hex')}`);
        expect(after.get('/etc/machine-id')).toBe(`file ${createHash('sha256').digest('hex')}`);
        for (const gone of ['/root/.bash_history', '/home/user/.bash_history', '/var/log/syslog', '/var/log/dpkg.log', '/tmp/scratch-file', '/var/tmp/scratch-file']) {
          expect(before.has(gone), `${gone} in the input`).toBe(true);
          expect(after.has(gone), `${gone} in the template`).toBe(false);
        }
        const aptCaches = [...before].filter(([k, v]) => k.startsWith('/var/cache/apt/') && v.startsWith('file ')).map(([k]) => k);
        expect(aptCaches.length).toBeGreaterThan(0);
        // Soft: the checks below still run (and report) when this one fails.
        expect(aptCaches.filter((k) => after.has(k)), 'apt caches left in the template').toEqual([]);

        // Every other file, link and directory is as it was; what differs is what the report names.
        const differs: string[] = [];
        for (const [path, what] of before) {
          const now = after.get(path);
          if (now === what) continue;
          const explained = now === undefined ? below(path, removed) : touched.has(path);
          if (!explained) differs.push(`${path}: ${what} → ${now ?? 'missing'}`);
        }
        for (const [path, what] of after) if (!before.has(path) && !below(path, touched)) differs.push(`${path}: new (${what})`);
        expect(differs).toEqual([]);
        expect(before.size - after.size).toBeGreaterThan(0);

        // The removed files' blocks are holes in the output, where a plain copy keeps them.
        const [sealedBytes, plainBytes] = [await allocatedBytes(out), await allocatedBytes(plain)];
        console.log(`removed ${t.removedBytes} bytes; output ${sealedBytes} bytes allocated, plain sparsify ${plainBytes}`);
        expect(t.removedBytes).toBeGreaterThan(0);
        // What the seal added (the first-boot unit) takes space the plain copy does not have.
        const addedBytes = t.operations.flatMap((op) => op.changes).filter((c) => c.change === 'added').reduce((sum, c) => sum + (c.bytes ?? 0), 0);
        expect(addedBytes).toBeGreaterThan(0);
        expect(plainBytes - sealedBytes).toBeGreaterThanOrEqual(t.removedBytes - addedBytes);
      },
      RUN_MS,
    );

    it(
      'one appliance launch serves the seal and the free-space pass (--engine appliance)',
      async () => {
        const out = join(dir, 'one-launch.qcow2');
        const json = join(dir, 'one-launch.json');
        const r = await sparsify(['--template', '--engine', 'appliance', '--machine-readable', '--format', 'raw', '--convert', 'qcow2', '--json', json, guest.imagePath, out]);
        expect(r.exitCode, r.stderr).toBe(0);
        expect(r.stdout.split('\n').filter((l) => l === 'Launch the libguestfs appliance')).toHaveLength(1);
        const report = JSON.parse(await readFile(json, 'utf8')) as RunReport;
        expect(report.phases.filter((ph) => ph.name === 'appliance launch')).toHaveLength(1);
        expect(report.volumes.find((v) => v.name === '/dev/sda1')).toMatchObject({ engine: 'appliance', handled: 'trimmed' });
        expect(await sha256File(guest.imagePath)).toBe(inputSha);
      },
      RUN_MS,
    );

    it(
      'a disk with no guest operating system: one line saying so, exit 1, no output',
      async () => {
        const disk = join(dir, 'no-os.raw');
        await execFileAsync('truncate', ['-s', '64M', disk]);
        await execFileAsync('mkfs.ext4', ['-q', disk]);
        const out = join(dir, 'no-os-out.raw');
        const r = await sparsify(['--template', '--format', 'raw', disk, out]);
        expect(r.exitCode).toBe(1);
        // The task list shows the failed step on stderr too; the error itself is one line.
        expect(r.stderr.split('\n').filter((l) => l.startsWith('sparsify: error:'))).toEqual([
          `sparsify: error: no guest operating system found on ${disk}: --template needs one to seal`,
        ]);
        expect((await readdir(dir)).filter((n) => n.includes('no-os-out'))).toEqual([]);
      },
      RUN_MS,
    );

    it(
      '--dry-run lists what would be removed and writes nothing',
      async () => {
        const out = join(dir, 'dry.raw');
        const json = join(dir, 'dry.json');
        const r = await sparsify(['--template', '--dry-run', '--format', 'raw', '--json', json, guest.imagePath, out]);
        expect(r.exitCode, r.stderr).toBe(0);
        expect(existsSync(out)).toBe(false);
        expect((await readdir(dir)).filter((n) => n.includes('dry.raw'))).toEqual([]);
        expect(await sha256File(guest.imagePath)).toBe(inputSha);
        expect(r.stdout).toContain('would be removed /etc/ssh/ssh_host_ed25519_key');
        expect(r.stdout).toContain('would be removed /root/.bash_history');
        expect(r.stdout).toContain('would be emptied /etc/machine-id');
        const report = JSON.parse(await readFile(json, 'utf8')) as RunReport;
        expect(report.output).toBeUndefined();
        expect(report.template?.dryRun).toBe(true);
        expect(report.template?.operations.find((o) => o.name === 'logfiles')?.changes.map((c) => c.path)).toContain('/var/log/syslog');
      },
      RUN_MS,
    );

    it(
      'Ctrl-C while the operations run: exit 1, the input unchanged, no process, mount, overlay or partial output left',
      async () => {
        const tmp = join(dir, 'tmp-cancel');
        const runtime = join(dir, 'run-cancel');
        await mkdir(tmp);
        await mkdir(runtime, { mode: 0o700 });
        const out = join(dir, 'cancel.qcow2');
        const othersLoops = await orphanLoops();
        const child = spawn(process.execPath, [CLI, '--template', '--machine-readable', '--format', 'raw', '--convert', 'qcow2', guest.imagePath, out], {
          env: { ...process.env, ...ENV, TMPDIR: tmp, XDG_RUNTIME_DIR: runtime },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        const exited = waitForExit(child);
        const watch = watchDescendants(child.pid!);
        let stdout = '';
        child.stdout!.on('data', (d) => (stdout += String(d)));
        try {
          const deadline = Date.now() + RUN_MS / 2;
          while (!stdout.includes('Run the templating operations\n') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
          expect(stdout, 'the operations step never started').toContain('Run the templating operations\n');
          child.kill('SIGINT');
          const r = await exited;
          expect(r.exitCode, r.stderr).toBe(1);
          expect(r.stderr).toMatch(/quit \(\^C\) at user request/);
          // Cut during the operations: the run never reached the next step.
          expect(stdout).not.toContain('Examine filesystems');
          const started = watch.stop();
          expect(started.some((p) => /qemu-system/.test(p.cmdline)), 'the appliance never ran').toBe(true);
          expect(stillRunning(started).map((p) => `${p.pid}: ${p.cmdline}`)).toEqual([]);
          expect(await leftoversUnder(tmp, othersLoops)).toEqual([]);
          expect(await leftoversUnder(runtime, othersLoops)).toEqual([]);
          expect((await readdir(dir)).filter((n) => n.includes('cancel.qcow2'))).toEqual([]);
          expect(await sha256File(guest.imagePath)).toBe(inputSha);
        } finally {
          watch.stop();
          if (child.exitCode === null) child.kill('SIGKILL');
          await exited;
        }
      },
      RUN_MS,
    );
  },
);
