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
});
