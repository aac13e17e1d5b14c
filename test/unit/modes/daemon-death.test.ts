import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeContext } from '../../../src/context.js';
import { SparsifyError } from '../../../src/errors.js';
import { explainDaemonDeath } from '../../../src/modes/daemon-death.js';
import { describeExit, isAlive, startDaemon, type Daemon } from '../../../src/qemu/daemon.js';

// Real processes (sh stand-ins that announce readiness like qemu-storage-daemon), really killed.
let dir: string;
const ctx = makeContext();

async function standIn(name: string): Promise<Daemon> {
  const pidFile = join(dir, `${name}.pid`);
  return startDaemon(ctx, 'sh', ['-c', 'echo $$ > "$1"; exec sleep 30', 'sh', pidFile], {
    pidFile,
    readyTimeoutMs: 5000,
    explainEarlyExit: (exit) => new SparsifyError('TOOL_FAILED', describeExit('sh', exit)),
  });
}

/**
 * Waits, without giving the event loop a turn (so Node cannot reap the child), until the kernel
 * has ended the process: kill(2) returns before a loaded machine has run the target's exit.
 */
function waitDeadUnreaped(pid: number): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 5000 && isAlive(pid); i++) Atomics.wait(pause, 0, 0, 1);
}

const refused = new SparsifyError('TOOL_FAILED', 'cannot connect to the NBD server at /x.sock: ECONNREFUSED');

describe('explainDaemonDeath', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-unit-death-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('names a killed daemon as the cause of any failure after its death, even before its exit is reaped', async () => {
    const d = await standIn('killed');
    process.kill(d.pid, 'SIGKILL');
    waitDeadUnreaped(d.pid);
    // Node has not reaped the child yet: no await between the kill and this call.
    const explained = explainDaemonDeath(refused, [{ serves: '/in.raw', pid: d.pid, exited: d.exited }]);
    await expect(explained).resolves.toMatchObject({
      code: 'DAEMON_DIED',
      message: 'qemu-storage-daemon serving /in.raw died (killed by SIGKILL)',
    });
  });

  it('names a dead guestfish as the appliance working on the disk', async () => {
    const d = await standIn('guestfish');
    process.kill(d.pid, 'SIGKILL');
    waitDeadUnreaped(d.pid);
    const explained = explainDaemonDeath(refused, [{ serves: 'the overlay /w/overlay.qcow2', pid: d.pid, exited: d.exited, tool: 'guestfish' }]);
    await expect(explained).resolves.toMatchObject({
      code: 'DAEMON_DIED',
      message: 'the libguestfs appliance (guestfish) working on the overlay /w/overlay.qcow2 died (killed by SIGKILL)',
    });
  });

  it('keeps the error when the daemons run, or were stopped by their owner', async () => {
    const running = await standIn('running');
    const stopped = await standIn('stopped');
    await stopped.stop();
    const daemons = [running, stopped].map((d) => ({ serves: 'x', pid: d.pid, exited: d.exited }));
    await expect(explainDaemonDeath(refused, daemons)).resolves.toBe(refused);
    const broken = new SparsifyError('NBD_PROTOCOL', 'NBD server broke the protocol: connection closed');
    await expect(explainDaemonDeath(broken, daemons.slice(1))).resolves.toBe(broken);
    await running.stop();
  });

  it('never turns a cancel into a death', async () => {
    const d = await standIn('cancel');
    process.kill(d.pid, 'SIGKILL');
    const cancelled = new SparsifyError('CANCELLED', 'quit (^C) at user request');
    await expect(explainDaemonDeath(cancelled, [{ serves: 'x', pid: d.pid, exited: d.exited }])).resolves.toBe(cancelled);
  });
});
