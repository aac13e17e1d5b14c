import { describe, expect, it } from 'vitest';
import { Writeback } from '../../../src/copy/writeback.js';

/** A sync the test finishes by hand, counting how many run at once. */
function manualSync() {
  const pending: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  let running = 0;
  let maxRunning = 0;
  const sync = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      const done = (): void => void running--;
      pending.push({ resolve: () => (done(), resolve()), reject: (err) => (done(), reject(err)) });
    });
  return { sync, pending, maxRunning: () => maxRunning };
}

describe('Writeback', () => {
  it('starts a background sync each time everyBytes have been written, never two at once', async () => {
    const m = manualSync();
    const wb = new Writeback(m.sync, 100);
    wb.wrote(60);
    expect(wb.syncs).toBe(0);
    wb.wrote(60); // 120 ≥ 100: one starts
    expect(wb.syncs).toBe(1);
    wb.wrote(500); // one is running: none more
    expect(wb.syncs).toBe(1);
    m.pending.shift()!.resolve();
    await Promise.resolve();
    await Promise.resolve();
    wb.wrote(100);
    expect(wb.syncs).toBe(2);
    m.pending.shift()!.resolve();
    await wb.settle();
    expect(m.maxRunning()).toBe(1);
  });

  it('keeps the error of a background sync and throws it from settle, even after later syncs succeed', async () => {
    const m = manualSync();
    const wb = new Writeback(m.sync, 10);
    wb.wrote(10);
    m.pending.shift()!.reject(new Error('EIO'));
    await expect(wb.settle()).rejects.toThrow('EIO');
    wb.wrote(10); // no sync starts once one failed
    expect(wb.syncs).toBe(1);
    await expect(wb.settle()).rejects.toThrow('EIO');
  });

  it('settle waits for the running sync', async () => {
    const m = manualSync();
    const wb = new Writeback(m.sync, 1);
    wb.wrote(1);
    let settled = false;
    const settling = wb.settle().then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).toBe(false);
    m.pending.shift()!.resolve();
    await settling;
    expect(settled).toBe(true);
  });
});
