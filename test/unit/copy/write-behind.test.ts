import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pageCacheOps } from '../../../src/copy/page-cache.js';
import { WriteBehind } from '../../../src/copy/write-behind.js';

/** Ops that record every call; a writeBackAndDrop waits until the test releases it. */
function recordingOps() {
  const calls: string[] = [];
  const held: (() => void)[] = [];
  let fail: Error | undefined;
  return {
    calls,
    held,
    failNext: (err: Error) => (fail = err),
    ops: {
      startWriteback: async (o: number, l: number) => {
        calls.push(`start ${o}+${l}`);
        if (fail) throw fail;
      },
      writeBackAndDrop: (o: number, l: number) =>
        new Promise<void>((resolve) => {
          calls.push(`drop ${o}+${l}`);
          held.push(resolve);
        }),
    },
  };
}

describe('WriteBehind', () => {
  it('starts writeback every step over the span written, and drops the oldest once the window is full', async () => {
    const r = recordingOps();
    const wb = new WriteBehind(r.ops, 100, 200);
    await wb.wrote(0, 60);
    expect(r.calls).toEqual([]);
    await wb.wrote(60, 40); // 100 written: one span [0, 100)
    await wb.wrote(100, 100);
    expect(r.calls).toEqual(['start 0+100', 'start 100+100']);
    let third = false;
    const writing = wb.wrote(300, 100).then(() => (third = true)); // a gap: the span is [300, 400)
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.calls).toEqual(['start 0+100', 'start 100+100', 'start 300+100', 'drop 0+100']);
    expect(third).toBe(false); // held back until the oldest is written back
    let settled = false;
    const settling = wb.settle().then(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false); // settle waits for the writeback in progress
    r.held.shift()!();
    await writing;
    expect(third).toBe(true);
    await settling;
    expect(settled).toBe(true);
  });

  it('keeps the first writeback error and throws it from every later call', async () => {
    const r = recordingOps();
    const wb = new WriteBehind(r.ops, 10, 100);
    r.failNext(new Error('EIO: sync_file_range failed'));
    await expect(wb.wrote(0, 10)).rejects.toThrow('EIO');
    await expect(wb.wrote(10, 1)).rejects.toThrow('EIO');
    await expect(wb.settle()).rejects.toThrow('EIO');
  });

  it('the C library calls load here and leave the file as written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sparsify-wb-'));
    try {
      const path = join(dir, 'f');
      const fh = await open(path, 'w+');
      const ops = pageCacheOps(fh.fd);
      expect(ops, 'koffi and libc load on this machine').toBeDefined();
      const data = Buffer.alloc(4 * 1024 * 1024, 0x5a);
      await fh.write(data, 0, data.length, 0);
      await ops!.startWriteback(0, data.length);
      await ops!.writeBackAndDrop(0, data.length);
      await fh.close();
      expect((await readFile(path)).equals(data)).toBe(true);
      // A closed descriptor: the call fails, as an I/O error.
      await expect(ops!.startWriteback(0, 4096)).rejects.toMatchObject({ code: 'EIO' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
