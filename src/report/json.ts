import type { RunReport } from './types.js';

/** The JSON report (--json): the RunReport itself, indented by two spaces, with a final newline. Users parse it. */
export function formatJsonReport(report: RunReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
