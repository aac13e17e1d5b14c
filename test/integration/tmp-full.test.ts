/**
 * A temporary directory too small for the mount engine's overlay, at the sizes where it showed
 * as something else (issue 7): 315 KiB, where qemu-storage-daemon "cannot create PID file", and
 * 244 KiB, where the overlay cannot grow under the mount and the volume was "copied as is" with
 * exit 0. Both are the one NO_SPACE line naming the directory, with nothing left behind.
 */
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { CaseCheck, leftoversOf, makeCaseDirs, mountTmpfs, runToEnd, scrub } from '../helpers/faults.js';
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
});
