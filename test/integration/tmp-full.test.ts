/**
 * A temporary directory too small for the mount engine's overlay, at the sizes where it showed
 * as something else (issue 7): 315 KiB, where qemu-storage-daemon "cannot create PID file", and
 * 244 KiB, where the overlay cannot grow under the mount and the volume was "copied as is" with
 * exit 0. Both are the one NO_SPACE line naming the directory, with nothing left behind.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { makeContext } from '../../src/context.js';
import { SparsifyError } from '../../src/errors.js';
import { startDaemon } from '../../src/qemu/daemon.js';
import { CaseCheck, fillUp, leftoversOf, makeCaseDirs, mountTmpfs, runToEnd, scrub } from '../helpers/faults.js';
import { buildImage } from '../helpers/image.js';
import { describeIntegration } from '../helpers/require.js';

const KiB = 1024;

describeIntegration('a full temporary directory (--engine mount)', { tools: ['qemu-img', 'qemu-storage-daemon', 'nbdfuse', 'losetup', 'mount'], root: true }, () => {
  it.each([315, 244])('%i KiB: NO_SPACE naming the directory, never qemu text or "cannot be mounted"', async (sizeKiB) => {
    const image = await buildImage({ layout: 'gpt', fs: ['ext4', 'swap'], size: '512M', fillMiB: 16, garbageMiB: 64, seed: 11 });
    const dirs = await makeCaseDirs();
    try {
      await mountTmpfs(dirs.work, sizeKiB * KiB);
      const end = await runToEnd(['-f', 'raw', '--engine', 'mount', '--convert', 'qcow2', image.imagePath, join(dirs.out, 'o.qcow2')], { TMPDIR: dirs.work });
      const c = new CaseCheck(`${sizeKiB} KiB`);
      c.failed(end, new RegExp(`^sparsify: error: temporary directory ${dirs.work}: no space left$`));
      c.that(!/cannot be mounted|PID file/.test(end.stderr), `misreported: ${end.stderr.trim()}`);
      c.found(await leftoversOf(dirs, [dirs.work]));
      expect(c.record().problems).toEqual([]);
    } finally {
      await scrub(dirs.root);
    }
  }, 120_000);

  it('a daemon whose pid file stays empty in a full directory: NO_SPACE at once, not "not ready" after the timeout', async () => {
    const dirs = await makeCaseDirs();
    try {
      await mountTmpfs(dirs.work, 256 * KiB);
      const workDir = join(dirs.work, 'sparsify-full');
      await mkdir(workDir);
      await fillUp(dirs.work);
      const pidFile = join(workDir, 'd.pid');
      // Creates the pid file and cannot write it (as a daemon on a full tmpfs), then waits on.
      const started = Date.now();
      const err = await startDaemon(makeContext(), 'sh', ['-c', ': > "$1"; echo $$ > "$1"; exec sleep 60', 'sh', pidFile], {
        pidFile,
        readyTimeoutMs: 30_000,
        explainEarlyExit: () => new SparsifyError('TOOL_FAILED', 'the stand-in exited'),
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'NO_SPACE', message: `temporary directory ${dirs.work}: no space left` });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await scrub(dirs.root);
    }
  }, 60_000);
});
