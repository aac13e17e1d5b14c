import { execFileSync } from 'node:child_process';
import { describe } from 'vitest';

/** Whether a program is on PATH. */
export function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v "$1"`, 'sh', tool], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why an integration suite cannot run here, or undefined when it can. */
export function missingRequirements(needs: { tools?: string[]; root?: boolean }): string | undefined {
  const missing = (needs.tools ?? []).filter((t) => !hasTool(t));
  if (missing.length) return `missing tools: ${missing.join(', ')} (run scripts/setup)`;
  if (needs.root && process.getuid?.() !== 0) return 'needs root';
  return undefined;
}

/**
 * `describe` for an integration suite: skipped with the reason printed when its tools are
 * missing; in CI (CI=true) a suite that would be skipped fails instead (STYLE.md §16).
 */
export function describeIntegration(
  name: string,
  needs: { tools?: string[]; root?: boolean },
  body: () => void,
): void {
  const why = missingRequirements(needs);
  if (!why) {
    describe(name, body);
    return;
  }
  if (process.env.CI === 'true') {
    describe(name, () => {
      throw new Error(`integration suite "${name}" cannot run in CI: ${why}`);
    });
    return;
  }
  console.warn(`skipping integration suite "${name}": ${why}`);
  describe.skip(name, body);
}
