import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { makeContext } from '../../../src/context.js';
import { launchArgs, runTool } from '../../../src/util/run.js';

describe('runTool', () => {
  // That the signal arrives when sparsify is SIGKILLed: test/integration/sigkill.test.ts.
  it('runs the program through setpriv with the parent-death signal set', async () => {
    expect(launchArgs('qemu-img', ['info', 'x'])).toEqual(['--pdeathsig', 'SIGTERM', '--', 'qemu-img', 'info', 'x']);
    expect(launchArgs('nbdfuse', [], 'SIGKILL')).toEqual(['--pdeathsig', 'SIGKILL', '--', 'nbdfuse']);
    const { stdout } = await runTool(makeContext(), 'echo', ['a b', '--', '-x']);
    expect(stdout).toBe('a b -- -x\n');
  });

  it('names the missing program (not setpriv) and its package', async () => {
    await expect(runTool(makeContext(), 'qemu-img-missing', [])).rejects.toMatchObject({
      code: 'TOOL_MISSING',
      message: 'qemu-img-missing is not installed',
    });
  });

  it('keeps a failing program its own exit code and stderr', async () => {
    await expect(runTool(makeContext(), 'sh', ['-c', 'echo broken >&2; exit 127'])).rejects.toMatchObject({
      code: 'TOOL_FAILED',
      message: 'sh exited with code 127: broken',
    });
  });

  it("starts the program in its own process group, out of reach of a terminal's ^C", async () => {
    const { stdout } = await runTool(makeContext(), 'sh', ['-c', 'ps -o pgid= -p $$']);
    expect(Number(stdout.trim())).not.toBe(Number(execFileSync('ps', ['-o', 'pgid=', '-p', String(process.pid)], { encoding: 'utf8' }).trim()));
  });

  it('a program killed by SIGINT or SIGTERM is a cancel, by another signal a kill: never its (empty) output', async () => {
    await expect(runTool(makeContext(), 'sh', ['-c', 'kill -INT $$'])).rejects.toMatchObject({ code: 'CANCELLED', message: 'quit (^C) at user request' });
    await expect(runTool(makeContext(), 'sh', ['-c', 'kill -TERM $$'])).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(runTool(makeContext(), 'sh', ['-c', 'kill -KILL $$'])).rejects.toMatchObject({ code: 'TOOL_FAILED', message: 'sh was killed by SIGKILL' });
  });
});
