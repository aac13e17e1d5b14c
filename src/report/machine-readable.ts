/**
 * virt-sparsify's --machine-readable output: with no disks, the capability lines; during a run,
 * one line per status message and a `DONE/TOTAL` line whenever the whole percentage changes.
 *
 * libguestfs prints its machine-readable progress as `printf("%" PRIu64 "/%" PRIu64 "\n")`
 * (common/progress/progress.c) between free-text status lines, so every reader of it already
 * takes `^\d+/\d+$` as progress and passes any other line over as a message. The rate and time
 * left therefore go on a line of their own after it (`sparsify-progress done=… total=…
 * rate=BYTES_PER_S eta=SECONDS`, the last two once known), never appended to the `N/D` line:
 * a reader matching that line whole would stop seeing progress at all.
 */
import type { RunUi } from '../modes/ui.js';
import type { Progress } from '../progress/meter.js';
import { percentOf } from '../progress/text.js';

/** Where machine-readable lines go. */
export interface LineSink {
  write(line: string): void;
}

/** What `--machine-readable` prints with no disks, as virt-sparsify does. */
export const CAPABILITIES = ['virt-sparsify', 'linux-swap', 'zero', 'check-tmpdir', 'in-place', 'tmp-option', 'ntfs', 'btrfs', 'luks'] as const;

/** The capability lines, newline-terminated. */
export function capabilityLines(): string {
  return `${CAPABILITIES.join('\n')}\n`;
}

/** A run's callbacks that write its messages and progress to `sink` as machine-readable lines. */
export function machineReadableUi(sink: LineSink): RunUi {
  let lastPercent = -1;
  return {
    message: (text) => sink.write(`${text}\n`),
    progress: (p) => {
      const percent = percentOf(p);
      if (percent === lastPercent) return;
      lastPercent = percent;
      sink.write(`${p.doneBytes}/${p.totalBytes}\n`);
      sink.write(`${rateLine(p)}\n`);
    },
  };
}

/** `sparsify-progress done=D total=T[ rate=B eta=S]`: integers, bytes and seconds. */
export function rateLine(p: Progress): string {
  const fields = [`done=${p.doneBytes}`, `total=${p.totalBytes}`];
  if (p.bytesPerSecond !== undefined) fields.push(`rate=${Math.round(p.bytesPerSecond)}`);
  if (p.etaSeconds !== undefined) fields.push(`eta=${p.etaSeconds}`);
  return `sparsify-progress ${fields.join(' ')}`;
}
