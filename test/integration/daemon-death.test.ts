/**
 * A qemu-storage-daemon killed as soon as it runs (issue 7): while it starts, and the run opens
 * its connection (in place), or while nbdfuse starts over it (the mount engine's overlay). The
 * run's error names the dead daemon, not what its death broke (a refused connection, nbdfuse's
 * connect, a protocol error). The timed kills at random points are in faults.test.ts.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { CaseCheck, TimedRun, findDaemon, leftoversOf, makeCaseDirs, scrub, type DaemonRole } from '../helpers/faults.js';
import { buildImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';

const DIED = /^sparsify: error: qemu-storage-daemon serving .+ died \(killed by SIGKILL\)$/;

describeIntegration('a daemon killed as it starts', { tools: ['qemu-img', 'qemu-storage-daemon', 'nbdfuse', 'losetup', 'mount'], root: true }, () => {
  it.each([
    ['in place', 'input'],
    ['the mount pass', 'overlay'],
  ] as const)('%s: the %s daemon is named as dead', async (_, role: DaemonRole) => {
    const image = await buildImage({ layout: 'gpt', fs: ['ext4', 'swap'], size: '512M', fillMiB: 16, garbageMiB: 64, seed: 11 });
    const dirs = await makeCaseDirs();
    try {
      const input = join(dirs.root, 'disk.raw');
      await copyFile(image.imagePath, input);
      const args = role === 'input' ? ['--in-place', '-f', 'raw', input] : ['-f', 'raw', '--engine', 'mount', '--convert', 'qcow2', input, join(dirs.out, 'o.qcow2')];
      const run = new TimedRun(['--machine-readable', ...args], { TMPDIR: dirs.work });
      const pid = await findDaemon(run, dirs.work, role);
      expect(pid, 'the daemon was not seen').toBeDefined();
      process.kill(pid!, 'SIGKILL');
      const end = await run.end();
      const c = new CaseCheck(role);
      c.failed(end, DIED);
      c.found(await leftoversOf(dirs));
      expect(c.record().problems).toEqual([]);
    } finally {
      await scrub(dirs.root);
    }
  }, 120_000);
});
