import type { RunReport } from '../report/types.js';

/** What a caller of the library may do at fixed points of a run. */
export interface RunHooks {
  /**
   * Receives the complete report before the run commits: in copy mode before the output is
   * renamed into place (a throw here fails the run and leaves no output file), in place at the
   * end. The CLI writes --json here, so a report that cannot be written leaves no output.
   */
  onReport?(report: RunReport): Promise<void> | void;
}
