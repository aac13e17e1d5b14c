/**
 * The --json report as tests read it: the library's exported RunReport type (so a test stops
 * compiling if the export goes away or a field it reads is renamed), with its basic shape checked
 * at run time (so a malformed report fails loudly instead of as `undefined` deep in an assertion).
 */
import { readFile } from 'node:fs/promises';
import type { RunReport } from '../../src/index.js';

/** Reads and checks the report sparsify wrote with `--json PATH`. */
export async function readReport(path: string): Promise<RunReport> {
  return parseReport(await readFile(path, 'utf8'), path);
}

/** Parses report text and checks its shape; `where` names it in the error. */
export function parseReport(text: string, where = 'report'): RunReport {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  const problems = reportProblems(value);
  if (problems.length > 0) throw new Error(`${where}: not a sparsify report: ${problems.join('; ')}`);
  return value as RunReport;
}

const VOLUME_STRINGS = ['name', 'type', 'action', 'handled', 'reason'] as const;
const VOLUME_NUMBERS = ['offsetBytes', 'sizeBytes', 'reclaimedBytes'] as const;

/** What is wrong with `value` as a RunReport, checked as far as the tests rely on it. */
function reportProblems(value: unknown): string[] {
  if (!isObject(value)) return ['not an object'];
  const problems: string[] = [];
  if (value.tool !== 'sparsify') problems.push(`tool is ${JSON.stringify(value.tool)}`);
  if (value.mode !== 'copy' && value.mode !== 'in-place') problems.push(`mode is ${JSON.stringify(value.mode)}`);
  if (!isObject(value.input)) problems.push('no input');
  for (const key of ['warnings', 'phases'] as const) if (!Array.isArray(value[key])) problems.push(`no ${key} array`);
  if (typeof value.totalMs !== 'number') problems.push('no totalMs');
  if (!Array.isArray(value.volumes)) return [...problems, 'no volumes array'];
  for (const [i, v] of value.volumes.entries()) {
    if (!isObject(v)) {
      problems.push(`volumes[${i}] is not an object`);
      continue;
    }
    for (const key of VOLUME_STRINGS) if (typeof v[key] !== 'string') problems.push(`volumes[${i}].${key} is not a string`);
    for (const key of VOLUME_NUMBERS) if (typeof v[key] !== 'number') problems.push(`volumes[${i}].${key} is not a number`);
  }
  return problems;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
