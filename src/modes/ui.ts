import type { Progress } from '../progress/meter.js';

/** What a run tells its caller as it goes; the caller (the CLI, a library user) decides how to show it. */
export interface RunUi {
  /** A phase started (virt-sparsify's status messages; machine-readable output prints them). */
  message?(text: string): void;
  /** Copy progress: bytes done of the bytes the copy will really read, the rate, the time left. */
  progress?(progress: Progress): void;
  /** --check-tmpdir=warn on a terminal: wait until the user presses RETURN. */
  waitForReturn?(prompt: string): Promise<void>;
}

/** A UI that is told nothing (library default). */
export const silentUi: RunUi = {};
