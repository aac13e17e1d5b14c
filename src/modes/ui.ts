import { Listr, type ListrTask } from 'listr2';

/** How a mode shows progress; chosen by the CLI (or a library caller). */
export interface RunUi {
  /** listr2 renderer: 'default' on a terminal, 'simple' for plain lines, 'silent' for -q or machine output. */
  readonly renderer: 'default' | 'simple' | 'silent';
  /** A phase started (virt-sparsify's status messages; machine-readable output prints them). */
  message?(text: string): void;
  /** Copy or discard progress in bytes. */
  progress?(doneBytes: number, totalBytes: number): void;
  /** --check-tmpdir=warn on a terminal: wait until the user presses RETURN. */
  waitForReturn?(prompt: string): Promise<void>;
}

/** A UI that shows nothing (library default). */
export const silentUi: RunUi = { renderer: 'silent' };

/** Runs a listr2 task list the way every mode does: no signal listeners, stop on first error. */
export async function runTasks<Ctx extends object>(ui: RunUi, tasks: ListrTask<Ctx>[], ctx: Ctx): Promise<Ctx> {
  const list = new Listr<Ctx, 'default' | 'simple' | 'silent'>(tasks, {
    renderer: ui.renderer,
    fallbackRenderer: 'simple',
    registerSignalListeners: false,
    exitOnError: true,
    collectErrors: false,
    rendererOptions: { collapseSubtasks: false, timer: undefined },
  } as never);
  return list.run(ctx);
}

/** A text progress bar for the listr2 task output. */
export function progressBar(doneBytes: number, totalBytes: number, width = 30): string {
  const fraction = totalBytes > 0 ? Math.min(1, doneBytes / totalBytes) : 1;
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${(fraction * 100).toFixed(0).padStart(3)}%`;
}
