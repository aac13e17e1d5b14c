import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeContext } from '../../../src/context.js';
import { SparsifyError } from '../../../src/errors.js';
import { describeExit, startDaemon } from '../../../src/qemu/daemon.js';

// Stand-in daemons written in sh: they announce readiness the way qemu-storage-daemon does.
let dir: string;
const ctx = makeContext();
const explainEarlyExit = (exit: Parameters<typeof describeExit>[1]) => new SparsifyError('TOOL_FAILED', describeExit('fake', exit));

describe('startDaemon', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-unit-daemon-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('returns once the pid file names the daemon, and stops it with SIGTERM', async () => {
    const pidFile = join(dir, 'a.pid');
    const d = await startDaemon(ctx, 'sh', ['-c', 'sleep 0.2; echo $$ > "$1"; exec sleep 30', 'sh', pidFile], {
      pidFile,
      readyTimeoutMs: 5000,
      explainEarlyExit,
    });
    expect(d.running()).toBe(true);
    const exit = await d.stop();
    expect(exit.signal).toBe('SIGTERM');
    expect(d.running()).toBe(false);
    await d.stop();
  });

  it('SIGKILLs a daemon that ignores SIGTERM', async () => {
    const pidFile = join(dir, 'b.pid');
    const d = await startDaemon(ctx, 'sh', ['-c', 'trap "" TERM; echo $$ > "$1"; while :; do sleep 0.1; done', 'sh', pidFile], {
      pidFile,
      readyTimeoutMs: 5000,
      explainEarlyExit,
    });
    expect((await d.stop('SIGTERM', 200)).signal).toBe('SIGKILL');
  });

  it('reports an early exit with the end of stderr', async () => {
    const pidFile = join(dir, 'c.pid');
    await expect(
      startDaemon(ctx, 'sh', ['-c', 'echo "no such node" >&2; exit 3'], { pidFile, readyTimeoutMs: 5000, explainEarlyExit }),
    ).rejects.toThrow('fake exited with code 3: no such node');
  });

  it('times out a daemon that never gets ready, and stops it', async () => {
    const pidFile = join(dir, 'd.pid');
    await expect(startDaemon(ctx, 'sleep', ['30'], { pidFile, readyTimeoutMs: 200, explainEarlyExit })).rejects.toThrow(
      /not ready after 200 ms/,
    );
  });

  it('says which package to install for a missing program', async () => {
    await expect(
      startDaemon(ctx, 'qemu-storage-daemon-missing', [], { pidFile: join(dir, 'e.pid'), readyTimeoutMs: 200, explainEarlyExit }),
    ).rejects.toMatchObject({ code: 'TOOL_MISSING' });
  });
});
