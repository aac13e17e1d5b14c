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
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { guestfsToolsSparsifyDir, prepareScriptRun, type ScriptRun } from '../helpers/guestfs-tools-source.js';
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
  let sparsifyDir: string;
  /** Why the scripts cannot be had; only outside CI, where the suite is then skipped. */
  let unavailable: string | undefined;
  const runs: ScriptRun[] = [];

  beforeAll(async () => {
    try {
      sparsifyDir = await guestfsToolsSparsifyDir();
    } catch (err) {
      if (process.env.CI === 'true') throw err;
      unavailable = (err as Error).message;
      console.warn(`skipping libguestfs' test scripts: ${unavailable}`);
    }
  });

  afterAll(async () => {
    for (const run of runs) await rm(run.dir, { recursive: true, force: true });
  });

  // Exit 77 is automake's "skipped" (the in-place script's answer to exit 3, "cannot discard"):
  // here it fails, like every other non-zero exit.
  const cases = [
    { script: 'test-virt-sparsify.sh', call: '--debug-gc --format raw test-virt-sparsify-1.img --convert qcow2 test-virt-sparsify-2.img' },
    { script: 'test-virt-sparsify-in-place.sh', call: '--debug-gc --in-place --format raw test-virt-sparsify-in-place.img' },
  ];
  for (const { script, call } of cases) {
    it(`${script} passes`, async (ctx) => {
      if (unavailable) return ctx.skip();
      const run = await prepareScriptRun(sparsifyDir, script);
      runs.push(run);
      const result = await runScript(run, script);
      expect(result.exitCode, result.output.slice(-4000)).toBe(0);
      expect(result.output).toMatch(/test virt-sparsify: \d+ K -> \d+ K/);
      // The script's virt-sparsify was sparsify, not the one libguestfs-tools installed.
      expect((await readFile(run.callLog, 'utf8')).trim()).toBe(call);
    }, SCRIPT_TIMEOUT_MS + 60_000);
  }
});
