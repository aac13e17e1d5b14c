/**
 * Deep shrinking (issue 12) of the Debian guest of scripts/make-guest (4 GiB GPT: ext4 root, then
 * swap at the end), by the shrink core (src/shrink/run.ts) in one libguestfs appliance over a qcow2
 * overlay of the guest, as copy mode runs it: the disk ends at most at resize2fs -P's minimum
 * plus 5%, plus the swap, plus 64 MiB; sgdisk -v and e2fsck -fn are clean; every file of the
 * root is identical; the swap keeps its UUID and label; the input's sha256 is unchanged.
 * Then the whole command line, once: `sparsify --shrink --template --convert qcow2 --compress IN
 * OUT` gives a compressed qcow2 of the new virtual size that checks clean, whose files are IN's
 * but those the template changed, and that boots under TCG to its login prompt with the kernel
 * seeing the shrunk disk, its root and its swap, and no GPT complaint.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { sliceReader } from '../../src/disk/types.js';
import { launchAppliance } from '../../src/engines/appliance/guestfish.js';
import { findAppliance } from '../../src/engines/appliance/host.js';
import { probeVolume } from '../../src/fs/probe.js';
import type { ProbeResult } from '../../src/fs/types.js';
import { readLayout } from '../../src/layout/read-layout.js';
import { openNbdClient } from '../../src/nbd/client.js';
import { serveImage } from '../../src/qemu/storage-daemon.js';
import { DEFAULT_SHRINK_MARGIN } from '../../src/shrink/margin.js';
import { shrinkDisk, type ShrinkReport } from '../../src/shrink/run.js';
import { UNIT_PATH } from '../../src/template/firstboot/unit.js';
import type { RunReport } from '../../src/report/types.js';
import { bootImage } from '../helpers/boot.js';
import { spawnCli, waitForExit } from '../helpers/cli.js';
import { buildGuest } from '../helpers/guest.js';
import { describeIntegration } from '../helpers/require.js';
import { readConsoleFacts, unexplainedDifferences } from '../helpers/shrunk-guest.js';

const execFileAsync = promisify(execFile);
const MiB = 1 << 20;
const RUN_MS = 40 * 60_000;

async function sh(file: string, args: readonly string[]): Promise<string> {
  return (await execFileAsync(file, args, { maxBuffer: 64 << 20 })).stdout;
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Runs `fn` with a read-only loop device over a byte window of `file`. */
async function withLoop<T>(file: string, offsetBytes: number, sizeBytes: number, fn: (dev: string) => Promise<T>): Promise<T> {
  const dev = (await sh('losetup', ['--find', '--show', '--read-only', '-o', String(offsetBytes), '--sizelimit', String(sizeBytes), file])).trim();
  try {
    return await fn(dev);
  } finally {
    await sh('losetup', ['-d', dev]);
  }
}

/** Runs `fn` with `dev` mounted read-only (no journal replay) at a fresh directory. */
async function withMount<T>(dev: string, at: string, fn: (dir: string) => Promise<T>): Promise<T> {
  await mkdir(at, { recursive: true });
  await sh('mount', ['-t', 'ext4', '-o', 'ro,noload', dev, at]);
  try {
    return await fn(at);
  } finally {
    await sh('umount', [at]);
  }
}

interface Part {
  start: number;
  size: number;
}

function partitions(path: string): Promise<Part[]> {
  return sh('sfdisk', ['--json', path]).then((out) => (JSON.parse(out) as { partitiontable: { partitions: Part[] } }).partitiontable.partitions);
}

describeIntegration('sparsify --shrink core on the Debian guest', { tools: ['guestfish', 'qemu-img', 'qemu-storage-daemon', 'sgdisk', 'sfdisk', 'resize2fs', 'e2fsck', 'losetup', 'blkid'], root: true }, () => {
  let dir: string;
  let input: string;
  let inputSha: string;
  let out: string;
  let report: ShrinkReport;
  let minimumBytes: number;
  let inParts: Part[];

  beforeAll(async () => {
    input = (await buildGuest()).imagePath;
    dir = await mkdtemp('/var/tmp/sp-shrink-');
    inputSha = await sha256(input);
    inParts = await partitions(input);
    const root = inParts[0]!;
    // The bound of the issue is resize2fs' own estimate for the input's root, measured here on the host.
    minimumBytes = await withLoop(input, root.start * 512, root.size * 512, async (dev) => {
      const estimate = await execFileAsync('resize2fs', ['-P', dev]).then((r) => r.stdout);
      const blocks = Number(/minimum size of the filesystem:\s*(\d+)/.exec(estimate)?.[1]);
      const blockSize = Number(/Block size:\s*(\d+)/.exec(await sh('dumpe2fs', ['-h', dev]))?.[1]);
      return blocks * blockSize;
    });

    const overlay = join(dir, 'overlay.qcow2');
    await sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=1.1', '-b', input, '-F', 'raw', overlay]);
    const ctx = makeContext();
    const work = join(dir, 'work');
    await mkdir(work);
    {
      await using served = await serveImage(ctx, { file: overlay, format: 'qcow2', readOnly: false, discard: true, dir: work });
      await using nbd = await openNbdClient({ socketPath: served.socketPath, exportName: served.exportName, signal: ctx.signal });
      const layout = await readLayout(nbd);
      const filesystems = new Map<string, ProbeResult>();
      for (const v of layout.volumes) filesystems.set(v.name, await probeVolume(sliceReader(nbd, v.offsetBytes, v.sizeBytes)));
      const found = await findAppliance(ctx);
      if (!found.available) throw new Error(found.reason);
      const drive = { socketPath: served.socketPath, exportName: served.exportName, readOnly: false, discard: true };
      await using appliance = await launchAppliance(ctx, { host: found.host, drives: [drive], workDir: work });
      report = await shrinkDisk({ appliance, reader: nbd, layout, filesystems, margin: DEFAULT_SHRINK_MARGIN, workDir: work, say: () => undefined });
    }
    out = join(dir, 'out.raw');
    await sh('qemu-img', ['convert', '-O', 'raw', overlay, out]);
    await sh('truncate', ['-s', String(report.virtualSizeAfterBytes), out]);
  }, RUN_MS);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the 4 GiB disk ends within resize2fs -P + 5% + the swap + 64 MiB, and the report says so per volume', () => {
    const swapBytes = inParts[1]!.size * 512;
    const boundBytes = minimumBytes * 1.05 + swapBytes + 64 * MiB;
    expect(report.virtualSizeBeforeBytes).toBe(4096 * MiB);
    expect(report.virtualSizeAfterBytes).toBeLessThanOrEqual(boundBytes);
    expect(report.volumes.map((v) => [v.name, v.action])).toEqual([
      ['/dev/sda1', 'resized'],
      ['/dev/sda2', 'remade'],
    ]);
    console.log(`shrink: ${report.virtualSizeBeforeBytes} -> ${report.virtualSizeAfterBytes} bytes; resize2fs -P ${minimumBytes}, swap ${swapBytes}, bound ${Math.floor(boundBytes)}`, JSON.stringify(report.volumes));
  });

  it('sgdisk -v is clean on the output and the partitions keep their GUIDs, names and order', async () => {
    expect(await sh('sgdisk', ['-v', out])).toMatch(/No problems found/);
    const before = JSON.parse(await sh('sfdisk', ['--json', input])) as { partitiontable: { id: string; partitions: Array<Record<string, unknown>> } };
    const after = JSON.parse(await sh('sfdisk', ['--json', out])) as { partitiontable: { id: string; partitions: Array<Record<string, unknown>> } };
    expect(after.partitiontable.id).toBe(before.partitiontable.id);
    const ids = (t: typeof before) => t.partitiontable.partitions.map((p) => [p.uuid, p.name, p.type, p.attrs]);
    expect(ids(after)).toEqual(ids(before));
  });

  it('e2fsck -fn is clean on the resized root and every file is identical; the swap keeps its UUID and label', async () => {
    const outParts = await partitions(out);
    await withLoop(out, outParts[0]!.start * 512, outParts[0]!.size * 512, async (dev) => {
      await expect(execFileAsync('e2fsck', ['-fn', dev])).resolves.toBeTruthy();
      await withLoop(input, inParts[0]!.start * 512, inParts[0]!.size * 512, (inDev) =>
        withMount(inDev, join(dir, 'mnt-in'), (a) => withMount(dev, join(dir, 'mnt-out'), async (b) => {
          const { stdout } = await execFileAsync('diff', ['-r', '--no-dereference', a, b], { maxBuffer: 64 << 20 }).catch((e: { stdout: string }) => e);
          expect(stdout).toBe('');
        })),
      );
    });
    const swapIds = (file: string, p: Part) =>
      withLoop(file, p.start * 512, p.size * 512, (dev) => sh('blkid', ['-p', '-o', 'export', '-s', 'UUID', '-s', 'LABEL', '-s', 'TYPE', dev]).then((s) => s.replace(/^DEVNAME=.*\n/m, '')));
    expect(await swapIds(out, outParts[1]!)).toBe(await swapIds(input, inParts[1]!));
  });

  it("the input's sha256 is unchanged", async () => {
    expect(await sha256(input)).toBe(inputSha);
  });
});


interface QemuCheck {
  readonly 'check-errors': number;
  readonly corruptions?: number;
  readonly leaks?: number;
  readonly 'compressed-clusters'?: number;
  readonly 'allocated-clusters'?: number;
}

/**
 * The whole command line on the Debian guest, once, every option that composes with --shrink but
 * --export (test/integration/shrink-export.test.ts): `sparsify --shrink --template --convert qcow2
 * --compress IN OUT`. OUT is checked from a raw copy first (the boot writes OUT), then booted.
 */
describeIntegration(
  'sparsify --shrink --template --convert qcow2 --compress IN OUT on the Debian guest',
  { tools: ['guestfish', 'qemu-img', 'qemu-storage-daemon', 'qemu-system-x86_64', 'sgdisk', 'sfdisk', 'e2fsck', 'losetup', 'blkid', 'debootstrap', 'extlinux'], root: true },
  () => {
    let dir: string;
    let input: string;
    let inputSha: string;
    let out: string;
    let outRaw: string;
    let report: RunReport;
    let runSeconds: number;

    beforeAll(async () => {
      dir = await mkdtemp('/var/tmp/sp-shrink-cli-');
      input = (await buildGuest()).imagePath;
      inputSha = await sha256(input);
      out = join(dir, 'out.qcow2');
      const json = join(dir, 'report.json');
      const t = Date.now();
      // spawnCli, not a runner with a kill timeout: a seal and a shrink under TCG at load take minutes.
      const r = await waitForExit(spawnCli(['--shrink', '--template', '--convert', 'qcow2', '--compress', '--format', 'raw', '--json', json, input, out], { LIBGUESTFS_BACKEND: 'direct' }));
      runSeconds = (Date.now() - t) / 1000;
      if (r.exitCode !== 0) throw new Error(`sparsify exited ${r.exitCode}: ${r.stderr}`);
      report = JSON.parse(await readFile(json, 'utf8')) as RunReport;
      outRaw = join(dir, 'out.raw');
      await sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', out, outRaw]);
    }, RUN_MS);

    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('refuses --shrink with --in-place as a usage error (exit 1, one line)', async () => {
      const r = await waitForExit(spawnCli(['--shrink', '--in-place', join(dir, 'none.raw')]));
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/--in-place and --shrink/);
    });

    it('OUT is a compressed qcow2 of the new virtual size that qemu-img check finds clean; the report has each volume', async () => {
      const shrink = report.shrink!;
      console.log(`shrink --template --convert qcow2 --compress: ${runSeconds.toFixed(0)} s; ${shrink.virtualSizeBeforeBytes} -> ${shrink.virtualSizeAfterBytes} bytes`);
      expect(shrink.virtualSizeAfterBytes).toBeLessThan(shrink.virtualSizeBeforeBytes);
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

    it('sgdisk -v and e2fsck -fn are clean; every file is identical but those the template changed, and its changes are there', async () => {
      expect(await sh('sgdisk', ['-v', outRaw])).toMatch(/No problems found/);
      const template = report.template!;
      const changes = template.operations.flatMap((o) => o.changes);
      expect(changes.filter((c) => c.change === 'removed').length).toBeGreaterThan(0);
      const inRoot = (await partitions(input))[0]!;
      const outRoot = (await partitions(outRaw))[0]!;
      await withLoop(outRaw, outRoot.start * 512, outRoot.size * 512, async (dev) => {
        await expect(execFileAsync('e2fsck', ['-fn', dev])).resolves.toBeTruthy();
        await withLoop(input, inRoot.start * 512, inRoot.size * 512, (inDev) =>
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
    });

    it('OUT boots under TCG to its login prompt; the guest sees the shrunk disk, mounts its root and turns its swap on', async () => {
      await using vm = await bootImage(out, { format: 'qcow2', loginTimeoutMs: 15 * 60_000 });
      console.log(`shrink-boot: login prompt after ${(vm.bootMs / 1000).toFixed(0)} s under TCG`);
      // swapon may run after getty shows the prompt: give it a minute.
      const deadline = Date.now() + 60_000;
      while (!readConsoleFacts(await vm.console()).swapOn && Date.now() < deadline) await delay(2000);
      const facts = readConsoleFacts(await vm.console());
      expect(facts).toEqual({ diskBytes: report.shrink!.virtualSizeAfterBytes, rootMounted: true, rootRemounted: true, swapOn: true, gptWarnings: [] });
    });

    it("the input's sha256 is unchanged", async () => {
      expect(await sha256(input)).toBe(inputSha);
    });
  },
);
