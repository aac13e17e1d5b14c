/**
 * Invariant 6 seen from the kernel: sparsify's output file is fsynced before it is renamed into
 * place, and a copy of more than a few write-behind steps has its writeback started and waited
 * for while it is written (sync_file_range, src/copy/write-behind.ts), so the final fsync finds
 * little left. Traced with strace on the built CLI, for a raw and a qcow2 output.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { WRITE_BEHIND_WINDOW_BYTES } from '../../src/copy/write-behind.js';
import { CLI } from '../helpers/cli.js';
import { describeIntegration } from '../helpers/require.js';

const MiB = 1024 * 1024;
/** More data than the write-behind window, so some writeback must be waited for during the copy. */
const DATA_BYTES = 4 * WRITE_BEHIND_WINDOW_BYTES + 64 * MiB;

/** One traced syscall: its kind, the path of its fd (or the rename's source), and where it completed. */
interface Traced {
  readonly call: 'fsync' | 'fdatasync' | 'sync_file_range' | 'rename';
  readonly path: string;
  /** Line index of its result (its own line, or its "resumed" line). */
  readonly doneAt: number;
  readonly startAt: number;
}

/** Parses `strace -f -y` output: calls may be split into "<unfinished ...>" and "<... X resumed>". */
function parseTrace(text: string): Traced[] {
  const lines = text.split('\n');
  const out: Traced[] = [];
  const open = new Map<string, { call: Traced['call']; path: string; startAt: number }>();
  lines.forEach((line, i) => {
    const pid = line.split(' ')[0]!;
    const start = /^\d+\s+(fsync|fdatasync|sync_file_range|rename|renameat2?)\((?:\d+<([^>]*)>|AT_FDCWD<[^>]*>, "([^"]*)"|AT_FDCWD, "([^"]*)"|"([^"]*)")/.exec(line);
    if (start) {
      const call = start[1]!.startsWith('rename') ? 'rename' : (start[1] as 'fsync' | 'fdatasync' | 'sync_file_range');
      const path = start[2] ?? start[3] ?? start[4] ?? start[5]!;
      if (line.includes('<unfinished ...>')) open.set(pid, { call, path, startAt: i });
      else if (/=\s*0\b/.test(line)) out.push({ call, path, startAt: i, doneAt: i });
      return;
    }
    const resumed = /^\d+\s+<\.\.\. (fsync|fdatasync|sync_file_range|rename\w*) resumed>.*=\s*0\b/.exec(line);
    const pending = open.get(pid);
    if (resumed && pending) {
      out.push({ ...pending, doneAt: i });
      open.delete(pid);
    }
  });
  return out;
}

describeIntegration('the output is durable before it is renamed into place', { tools: ['qemu-img', 'qemu-storage-daemon', 'strace'] }, () => {
  let dir: string;
  let input: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sparsify-durable-'));
    input = join(dir, 'in.raw');
    // 1 GiB raw with DATA_BYTES of non-zero data at its start and the rest a hole.
    await using fh = await open(input, 'wx');
    const block = Buffer.alloc(8 * MiB, 0xa5);
    for (let at = 0; at < DATA_BYTES; at += block.length) await fh.write(block, 0, Math.min(block.length, DATA_BYTES - at), at);
    await fh.truncate(1024 * MiB);
  }, 120_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const format of ['raw', 'qcow2'] as const) {
    it(`${format} output: written back while copying, and its fsync returns before the rename`, async () => {
      const output = join(dir, `out.${format}`);
      const trace = join(dir, `strace-${format}.txt`);
      await rm(output, { force: true });
      execFileSync('strace', ['-f', '-y', '-qq', '-e', 'trace=fsync,fdatasync,sync_file_range,rename,renameat,renameat2', '-o', trace,
        process.execPath, CLI, '--no-zero', '--format', 'raw', '--convert', format, input, output], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
      const calls = parseTrace(await readFile(trace, 'utf8'));
      const rename = calls.find((c) => c.call === 'rename' && c.path !== output && c.path.startsWith(dir));
      expect(rename, 'the partial output is renamed to the output').toBeDefined();
      const partial = rename!.path;
      const onPartial = calls.filter((c) => c.path === partial);
      const lastFsync = onPartial.filter((c) => c.call === 'fsync').at(-1);
      expect(lastFsync, `an fsync of ${partial}`).toBeDefined();
      expect(lastFsync!.doneAt).toBeLessThan(rename!.startAt);
      // The write-behind: writeback of the output started and waited for before the final fsync started.
      expect(onPartial.filter((c) => c.call === 'sync_file_range' && c.doneAt < lastFsync!.startAt).length).toBeGreaterThan(2);
      expect(execFileSync('qemu-img', ['compare', '-f', 'raw', '-F', format, input, output]).toString()).toMatch(/identical/i);
    }, 180_000);
  }
});
