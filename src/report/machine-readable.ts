/**
 * virt-sparsify's --machine-readable output: with no disks, the capability lines; during a run,
 * one line per status message and a `DONE/TOTAL` line whenever the whole percentage changes.
 */
import type { RunUi } from '../modes/ui.js';

/** Where machine-readable lines go. */
export interface LineSink {
  write(line: string): void;
}

/** What `--machine-readable` prints with no disks, as virt-sparsify does. */
export const CAPABILITIES = ['virt-sparsify', 'linux-swap', 'zero', 'check-tmpdir', 'in-place', 'tmp-option', 'ntfs', 'btrfs'] as const;

/** The capability lines, newline-terminated. */
export function capabilityLines(): string {
  return `${CAPABILITIES.join('\n')}\n`;
}

/** A run's callbacks that write its messages and progress to `sink` as machine-readable lines. */
export function machineReadableUi(sink: LineSink): RunUi {
  let lastPercent = -1;
  return {
    message: (text) => sink.write(`${text}\n`),
    progress: (done, total) => {
      const percent = total > 0 ? Math.floor((done * 100) / total) : 100;
      if (percent === lastPercent) return;
      lastPercent = percent;
      sink.write(`${done}/${total}\n`);
    },
  };
}
