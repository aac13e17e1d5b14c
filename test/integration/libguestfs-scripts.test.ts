/**
 * Drop-in check: libguestfs' own virt-sparsify test scripts (guestfs-tools' sparsify/test-*.sh,
 * from Debian's source package), run unchanged with `virt-sparsify` on PATH running sparsify.
 * They build their disk with guestfish, sparsify it and compare `du` before and after.
 *
 * test-virt-sparsify-docs.sh is not run: it checks virt-sparsify's manual page against the
 * tool's `--long-options`, `--short-options` and `--help`, and sparsify has options of its own
 * (`--engine`, `--json`) that manual does not document.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { itRunsEachScript, type ScriptRun } from '../helpers/guestfs-tools-source.js';
import { describeIntegration } from '../helpers/require.js';

/** One script builds a 400 MB disk with guestfish under TCG (~80 s on an idle machine). */
const SCRIPT_TIMEOUT_MS = 540_000;

interface ScriptResult {
  readonly exitCode: number;
  readonly output: string;
}

function runScript(run: ScriptRun, script: string): Promise<ScriptResult> {
  return new Promise((resolve) => {
    execFile(
      'bash',
      [script],
      { cwd: join(run.dir, 'top', 'sparsify'), env: run.env, maxBuffer: 64 << 20, timeout: SCRIPT_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const exitCode = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ exitCode, output: `${stdout}\n${stderr}` });
      },
    );
  });
}

describeIntegration("libguestfs' own virt-sparsify test scripts, unchanged", { tools: ['apt-get', 'tar', 'bash', 'guestfish', 'du', 'qemu-img'], root: true }, () => {
  itRunsEachScript('', SCRIPT_TIMEOUT_MS + 60_000, async (run, script, call) => {
    const result = await runScript(run, script);
    expect(result.exitCode, result.output.slice(-4000)).toBe(0);
    expect(result.output).toMatch(/test virt-sparsify: \d+ K -> \d+ K/);
    // The script's virt-sparsify was sparsify, not the one libguestfs-tools installed.
    expect((await readFile(run.callLog, 'utf8')).trim()).toBe(call);
  });
});
